#!/usr/bin/env bash
# Report of the bench/co_qat.sh runs in DIR: every run, fused vs classic, compute used, and the loss-law fit
# (`catq qat-fit`, fused runs, Huber on log L) with the optimal fraction per (N, D, bits) vs the published formula.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-bench/results/co_qat}
CATQ=${CATQ:-build/catq}
python3 - "$DIR" <<'PY'
import glob, json, math, sys
rs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/*_s[0-9]*.json"))]
print(f"{len(rs)} runs, {sum(r['seconds'] for r in rs) / 60:.1f} CPU-minutes (single thread)\n")
print("| params | tokens | bits | f | schedule | val NLL quantized | RTN after FP phase | FP after FP phase | s |")
print("|---:|---:|---:|---:|---|---:|---:|---:|---:|")
key = lambda r: (r["parameters"], r["tokens_seen"], r["bits"], r["schedule"], r["qat_fraction"])
for r in sorted(rs, key=key):
    fp = r["fp_val_nll"]
    print(f"| {r['parameters']/1e6:.3f} M | {r['tokens_seen']/1e6:.2f} M | {r['bits']} | {r['qat_fraction']} | {r['schedule']} | "
          f"{r['val_nll']:.4f} | {r['ptq_val_nll']:.4f} | {'–' if fp is None else f'{fp:.4f}'} | {r['seconds']:.0f} |")
# fused vs classic at equal (N, D, bits, f)
pairs = {}
for r in rs:
    pairs.setdefault((r["parameters"], r["tokens_seen"], r["bits"], r["qat_fraction"]), {})[r["schedule"]] = r["val_nll"]
both = [(k, v) for k, v in sorted(pairs.items()) if "fused" in v and "classic" in v]
if both:
    print("\n| params | tokens | bits | f | fused | classic | fused − classic (PPL %) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for (n, d, b, f), v in both:
        print(f"| {n/1e6:.3f} M | {d/1e6:.2f} M | {b} | {f} | {v['fused']:.4f} | {v['classic']:.4f} | "
              f"{100 * (math.exp(v['fused'] - v['classic']) - 1):+.2f} % |")
# plot: validation NLL of the quantized model vs QAT fraction, one line per (N, D, bits, schedule)
fr = sorted({r["qat_fraction"] for r in rs})
colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
series, lines = [], {}
for r in rs:
    lines.setdefault((r["parameters"], r["tokens_seen"], r["bits"], r["schedule"]), {})[r["qat_fraction"]] = r["val_nll"]
for i, ((n, d, b, sch), v) in enumerate(sorted(lines.items())):
    if sch == "classic":
        v = dict(v)
        v[0.0] = lines.get((n, d, b, "fused"), {}).get(0.0)  # f = 0 (RTN) is the same run for both schedules
    series.append({"label": f"N {n/1e6:.2f}M D {d/1e6:.2f}M {b}-bit {sch}", "y": [v.get(f) for f in fr],
                   "color": colors[i % len(colors)], "dashed": sch == "classic"})
json.dump({"title": "FP then weights-only QAT: validation NLL of the quantized model vs QAT fraction (f = 0: RTN)",
           "y_label": "val NLL (nats/token)", "x_labels": [f"f={f:g}" for f in fr], "series": series},
          open(sys.argv[1] + "/plot.json", "w"), indent=1)
PY
"$CATQ" -q plot "$DIR/plot.json" -o "$DIR/co_qat.svg"
echo
"$CATQ" -q qat-fit "$DIR"/*_s*.json --schedule fused -o "$DIR/law.json"
