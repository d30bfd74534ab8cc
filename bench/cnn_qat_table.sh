#!/usr/bin/env bash
# Markdown table of the QAT runs recorded by bench/cnn_qat.sh in DIR (mean ± std over seeds per model/bits/tag).
set -euo pipefail
python3 - "${1:-bench/results/cnn_qat}" <<'PY'
import glob, json, statistics, sys
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    r = json.load(open(f))
    rows.setdefault((r["model"], r["bits"], r["tag"], r["epochs"], r["options"]), []).append(r)
print("| model | bits | variant | epochs | seeds | top-1 % (eval split) | final train loss | wall s / run |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for (m, b, tag, ep, opt), rs in sorted(rows.items()):
    t = [r["top1"] for r in rs]
    sd = f" ± {statistics.stdev(t):.2f}" if len(t) > 1 else ""
    loss = statistics.mean(r["history"][-1]["loss"] for r in rs)
    var = (tag.lstrip("_") or "default") + (f" ({opt})" if opt else "")
    print(f"| {m} | {b} | {var} | {ep} | {len(rs)} | {statistics.mean(t):.2f}{sd} | {loss:.4f} | {statistics.mean(r['seconds'] for r in rs):.0f} |")
PY
