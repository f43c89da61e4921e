#!/bin/bash
# Fidelity of data-free `--budget latency=F` against the uniform
# --rank-ratio on the ImageNet-shaped MobileNetV1 1.0 (bench/compress/README.md,
# "--budget latency=F: fidelity"). No ImageNet images here: fidelity is
# measured on random standard-normal inputs, a proxy only.
#
#   bash bench/compress/budgetfid/imagenet.sh LPRCONV OUT [F]   (default F 0.8; RUNS budget runs, default 2)
#
# Budget runs: compress --budget latency=F at batch 1, 1 thread (sensitivity:
# rankalloc.MetricRandom on 16 random inputs, seed 1). Uniform ratios
# (RATIOS, default 1/4 5/16 3/8) with --no-latency (no latency planning). Then all are
# timed against the original, interleaved, at batch 1 (ortlatency), and
# compared with the original on 64 random inputs of seed 7 (not those the
# sensitivities were measured on) and of seed 1.
set -euo pipefail
bin=$(realpath "$1"); out=$2; f=${3:-0.8}
ratios=${RATIOS:-0.25 0.3125 0.375}
cd "$(dirname "$0")/../../.."
m=${MODEL:-${IMAGENET_DIR:-/root/.cache/lprconv/imagenet}/mobilenetv1_1.0.onnx}
mkdir -p "$out"
for i in $(seq 1 "${RUNS:-2}"); do
	"$bin" compress "$m" --budget latency="$f" --latency-batch 1 --latency-threads 1 --json --overwrite -o "$out/b${f}_$i.onnx" >"$out/b${f}_$i.json" 2>"$out/b${f}_$i.err"
done
for r in $ratios; do
	"$bin" compress "$m" --rank-ratio "$r" --no-latency --json --overwrite -o "$out/u$r.onnx" >"$out/u$r.json" 2>"$out/u$r.err"
done
go run ./bench/compress/ortlatency -batches 1 -time "${LATENCY_TIME:-8s}" -sessions "${SESSIONS:-2}" "$m" "$out"/b*.onnx "$out"/u*.onnx >"$out/latency.txt"
for x in "$out"/*.onnx; do
	for seed in 7 1; do
		"$bin" compare "$m" "$x" --random 64 --seed "$seed" --json >"${x%.onnx}.seed$seed.json"
	done
done
python3 - "$out" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
lat = {}
for line in open(os.path.join(out, "latency.txt")):
    m = re.match(r"(\S+)\.onnx\s+1\s+\S+\s+\d+\s+([0-9.]+)\s+(\[[^]]*\])", line)
    if m:
        lat[os.path.basename(m.group(1))] = m.group(2) + " " + m.group(3)
print("| model | ranks (0 = kept) | MACs | latency b1 | compress's own | rel. L2 / cosine, seed 7 | rel. L2 / cosine, seed 1 |")
print("|---|---|---|---|---|---|---|")
for js in sorted(glob.glob(os.path.join(out, "*.json"))):
    if ".seed" in js:
        continue
    name = os.path.basename(js)[:-5]
    c = json.load(open(js))
    ranks = " ".join(str(l["rank"] if l["replace"] else 0) for l in c["layers"])
    own = "-"
    b = (c.get("latency") or {}).get("budget")
    if b:
        own = "%.3f (predicted %.3f, checks %s)" % (b.get("achieved_ratio", 0), b["predicted_ratio"], ", ".join("%.3f" % k["measured_ratio"] for k in b.get("checks", [])))
    row = [name, ranks, "%.3f" % c["macs_ratio"], lat.get(name, "?"), own]
    for seed in (7, 1):
        r = json.load(open(os.path.join(out, "%s.seed%d.json" % (name, seed))))
        row.append("%.4f / %.4f" % (r["relative_l2_diff"], r["cosine"]))
    print("| " + " | ".join(row) + " |")
PY
