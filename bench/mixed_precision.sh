#!/usr/bin/env bash
# Mixed precision under a budget on the CIFAR-10 ResNets (issue 6 item 5): per-layer bits from {2, 4, 8} under a
# BOPs budget (Σ MACs·bw·ba) or a weight-bytes budget, chosen by the knapsack (sensitivity) and the Gumbel-softmax
# allocators on the calibration split, then quantized with METHOD (rtn by default), evaluated on the evaluation
# split; uniform W2A2 / W4A4 (the same budgets' uniform points) measured in the same run.
# Budgets wN = what uniform N-bit layers cost (first conv and last linear are 8-bit everywhere).
# Usage: MODELS=resnet20 METHODS="rtn" BUDGETS="bops:w2 bops:w3 bops:w4 bytes:w3" OUT=bench/results/mixed_precision \
#        bench/mixed_precision.sh [extra quantize options]
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
OUT=${OUT:-bench/results/mixed_precision}
MODELS=${MODELS:-resnet20}
METHODS=${METHODS:-rtn}
BUDGETS=${BUDGETS:-"bops:w2 bops:w3 bops:w4 bytes:w3"}
ALLOCS=${ALLOCS:-"knapsack gumbel"}
mkdir -p "$OUT"
run() {  # name, then quantize options
  local name=$1; shift
  local base="$OUT/$name"
  [ -s "$base.json" ] && return 0
  local t0=$(date +%s)
  "$CATQ" -q quantize "$@" -o "$base.catq" > "$base.log"
  local t1=$(date +%s)
  "$CATQ" -q --json eval "$base.catq" --data "$S/cifar10/test.bin" --split eval > "$base.eval"
  python3 - "$base" "$name" $((t1 - t0)) <<'PY'
import json, sys
base, name, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
e = json.load(open(base + ".eval"))
md = e["metadata"]
mp = md.get("mixed_precision")
rec = {"name": name, "seconds": secs, "top1": e["quantized"]["top1"], "weight_bytes": e["quantized"]["weight_bytes"],
       "method": md.get("method"), "bits": md.get("bits")}
if mp:
    rec.update({"allocator": mp["allocator"], "budget_kind": mp["budget_kind"], "budget": mp["budget"], "cost": mp["cost"],
                "uniform_costs": mp["uniform_costs"], "allocation": [a["bits"] for a in mp["allocation"]],
                "alloc_seconds": mp["seconds"], "rtn_kl_calib": mp["rtn_kl"]})
json.dump(rec, open(base + ".json", "w"), indent=1)
PY
}
for m in $MODELS; do
  onnx=$S/resnet-cifar10/$m.onnx
  for meth in $METHODS; do
    for bits in w2a2 w4a4; do run "${m}_${meth}_uniform_$bits" "$onnx" --method "$meth" --bits "$bits" --calib "$S/cifar10/test.bin" "$@"; done
    for b in $BUDGETS; do
      kind=${b%%:*}; val=${b##*:}
      for a in $ALLOCS; do
        run "${m}_${meth}_${kind}_${val}_$a" "$onnx" --method "$meth" --budget-$kind "$val" --alloc "$a" --calib "$S/cifar10/test.bin" "$@"
      done
    done
  done
done
python3 - "$OUT" <<'PY'
import glob, json, sys
rs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/*.json")) if not f.endswith("/plot.json")]
print("| model / method | allocation | budget | cost / budget | bits per layer (first … last) | top-1 % | weight bytes | alloc s | total s |")
print("|---|---|---|---:|---|---:|---:|---:|---:|")
for r in rs:
    if "allocator" in r:
        kind = r["budget_kind"]
        w = min(r["uniform_costs"], key=lambda k: abs(r["uniform_costs"][k] - r["budget"]))
        tag = f"{kind} = uniform {w}" if abs(r["uniform_costs"][w] - r["budget"]) < 1e-6 * r["budget"] else f"{kind} {r['budget']:.4g}"
        if tag.startswith(kind + " ") and "w3" in r["name"]: tag = f"{kind} = uniform w3 (not a candidate)"
        print(f"| {r['name'].rsplit('_', 3)[0]} | {r['allocator']} | {tag} | {r['cost'] / r['budget']:.3f} | "
              f"{' '.join(map(str, r['allocation']))} | {r['top1']:.2f} | {r['weight_bytes']} | {r['alloc_seconds']:.0f} | {r['seconds']} |")
    else:
        print(f"| {r['name'].rsplit('_', 2)[0]} | uniform | {r['bits']} | – | – | {r['top1']:.2f} | {r['weight_bytes']} | – | {r['seconds']} |")
# plot: top-1 vs BOPs budget (uniform points where a uniform model has that cost)
budgets = ["w2", "w3", "w4"]
def top1(name):
    m = [r for r in rs if r["name"].endswith(name)]
    return m[0]["top1"] if m else None
series = [{"label": f"{a} (BOPs budget)", "y": [top1(f"_bops_{b}_{a}") for b in budgets], "color": c}
          for a, c in (("knapsack", "#1f77b4"), ("gumbel", "#ff7f0e"))]
series.append({"label": "uniform", "y": [top1("_uniform_w2a2"), None, top1("_uniform_w4a4")], "color": "#2ca02c", "dashed": True})
json.dump({"title": "ResNet-20 mixed precision {2,4,8} (RTN): top-1 vs BOPs budget (= uniform wN cost)",
           "y_label": "top-1 % (evaluation split)", "x_labels": [f"budget {b}" for b in budgets], "series": series},
          open(sys.argv[1] + "/plot.json", "w"), indent=1)
PY
"$CATQ" -q plot "$OUT/plot.json" -o "$OUT/mixed_precision.svg"
