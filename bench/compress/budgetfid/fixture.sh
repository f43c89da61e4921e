#!/bin/bash
# Fidelity of `--budget latency=F` against the uniform --rank-ratio on the
# MobileNetV1 Fashion-MNIST fixture (bench/compress/README.md, "--budget
# latency=F: fidelity").
#
#   bash bench/compress/budgetfid/fixture.sh LPRCONV OUT [F...]   (default F: 0.9 0.85 0.8)
#
# For each F: compress --budget latency=F at --latency-batch 64 with KL
# sensitivities on the 1,000 committed training images and the default
# fine-tuning (bF_ft.onnx), then the same ranks data-free (bF_df.onnx: SVD
# factors, --layer-rank/--exclude, no fine-tuning); and data-free
# --budget latency=F (rF_df.onnx: sensitivity on random inputs) with its
# ranks fine-tuned (rF_ft.onnx). For each uniform ratio
# (RATIOS, default 5/16 1/4 3/16 1/8) the same two (uR_df.onnx, uR_ft.onnx),
# with --keep-slower so that latency planning keeps every layer. Then every
# data-free model (a fine-tuned one has its data-free twin's graph shapes)
# is timed against the original, interleaved, at batch 64 (ortlatency), and
# every model's top-1 on the 10,000 Fashion-MNIST test images and top-1
# agreement with the original are measured (lprconv compare). Needs ONNX
# Runtime ($ONNXRUNTIME_LIB) and /usr/share/datasets/fashion-mnist.
set -euo pipefail
bin=$(realpath "$1"); out=$2; shift 2
fs=${*:-0.9 0.85 0.8}
ratios=${RATIOS:-0.3125 0.25 0.1875 0.125}
cd "$(dirname "$0")/../../.."
m=testdata/models/mobilenetv1.onnx
mkdir -p "$out"
data=(--data testdata/images/train --mean 0.286 --std 0.353 --fit pad)
common=(--latency-batch 64 --latency-threads 1 --threads "${THREADS:-1}" --json --overwrite)
test=(--data /usr/share/datasets/fashion-mnist --split test --fit pad --mean 0.286 --std 0.353 --threads "${THREADS:-1}" --json)
# selection FILE prints the --layer-rank and --exclude flags that reproduce
# the ranks in FILE (compress --json output).
selection() {
	python3 - "$1" <<'PY'
import json, re, sys
for l in json.load(open(sys.argv[1]))["layers"]:
    if l["replace"]:
        print("--layer-rank"); print("%s=%d" % (l["name"], l["rank"]))
    else:
        print("--exclude"); print("^" + re.escape(l["name"]) + "$")
PY
}
# lpr NAME ARGS... runs compress ARGS -o OUT/NAME.onnx (JSON to NAME.json)
# unless NAME.onnx exists (a rerun resumes); a budget no ranks reach is
# reported and skipped.
lpr() {
	local name=$1; shift
	[ -s "$out/$name.onnx" ] && return 0
	"$bin" compress "$m" "$@" "${common[@]}" -o "$out/$name.onnx" >"$out/$name.json" 2>"$out/$name.err" ||
		{ echo "$name: $(tail -1 "$out/$name.err")" >&2; rm -f "$out/$name.json"; return 1; }
}
for f in $fs; do
	if lpr "b${f}_ft" --budget latency="$f" "${data[@]}"; then
		# The same ranks, data-free: every replaced layer at its rank, every kept one excluded.
		mapfile -t sel < <(selection "$out/b${f}_ft.json")
		lpr "b${f}_df" "${sel[@]}" --keep-slower
	fi
	# Data-free budget (sensitivity on random inputs), then its ranks fine-tuned.
	if lpr "r${f}_df" --budget latency="$f"; then
		mapfile -t sel < <(selection "$out/r${f}_df.json")
		lpr "r${f}_ft" "${sel[@]}" --keep-slower "${data[@]}"
	fi
done
for r in $ratios; do
	lpr "u${r}_df" --rank-ratio "$r" --keep-slower
	lpr "u${r}_ft" --rank-ratio "$r" --keep-slower "${data[@]}"
done
go run ./bench/compress/ortlatency -batches 64 -time "${LATENCY_TIME:-4s}" -sessions "${SESSIONS:-3}" "$m" "$out"/*_df.onnx >"$out/latency.txt"
for x in "$out"/*.onnx; do
	[ -s "${x%.onnx}.compare.json" ] && continue
	"$bin" compare "$m" "$x" "${test[@]}" >"${x%.onnx}.compare.json"
done
python3 - "$out" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
lat = {}
for line in open(os.path.join(out, "latency.txt")):
    m = re.match(r"(\S+)_df\.onnx\s+64\s+\S+\s+\d+\s+([0-9.]+)\s+(\[[^]]*\])", line)
    if m:
        lat[os.path.basename(m.group(1))] = m.group(2) + " " + m.group(3)
print("| model | ranks (0 = kept) | MACs | latency b64 | data-free: agreement / top-1 / rel. L2 | fine-tuned: agreement / top-1 / rel. L2 |")
print("|---|---|---|---|---|---|")
for df in sorted(glob.glob(os.path.join(out, "*_df.json"))):
    name = os.path.basename(df)[:-8]
    if not os.path.exists(os.path.join(out, name + "_ft.compare.json")):
        continue
    c = json.load(open(df))
    ranks = " ".join(str(l["rank"] if l["replace"] else 0) for l in c["layers"])
    row = [name, ranks, "%.3f" % c["macs_ratio"], lat.get(name, "?")]
    for kind in ("df", "ft"):
        r = json.load(open(os.path.join(out, "%s_%s.compare.json" % (name, kind))))
        row.append("%.2f / %.2f / %.4f" % (r["top1_agreement_percent"], r["top1_b_percent"], r["relative_l2_diff"]))
    print("| " + " | ".join(row) + " |")
PY
