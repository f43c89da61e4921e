#!/bin/bash
# Benchmarks of data-free `lprconv compress` (bench/compress).
#
#   bash bench/compress/run.sh [speed|latency|accuracy|all]   (default all)
#
# speed:    times `lprconv compress IMAGENET/mobilenetv1_1.0.onnx --rank-ratio 0.25`
#           5 times (median wall time, peak RSS from /usr/bin/time -v).
# latency:  ONNX Runtime latency (1 thread, batch 1 and 64, original and
#           compressed interleaved) of every fixture at ratios 1/2, 1/4, 1/8
#           for each residual kind, with the MAC ratio; then the same with
#           the defaults of `lprconv compress` (default residual, --multiple).
# accuracy: top-1 on the 500 committed test images before fine-tuning, for
#           every fixture, residual kind and ratio (forced at 1/2, which is
#           the break-even rank).
#
# Needs ONNX Runtime (see internal/ortrun) for latency and accuracy, and the
# ImageNet-shaped exports (testdata/gen/export_imagenet.py) for speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$what" = speed ] || [ "$what" = all ]; then
	model=$imagenet/mobilenetv1_1.0.onnx
	[ -f "$model" ] || { echo "missing $model; run testdata/gen/export_imagenet.py" >&2; exit 1; }
	go build -o "$tmp/lprconv" ./cmd/lprconv
	echo "== compress speed: $model --rank-ratio 0.25 (5 runs)"
	for i in 1 2 3 4 5; do
		/usr/bin/time -v "$tmp/lprconv" compress "$model" -o "$tmp/out.onnx" --overwrite --rank-ratio 0.25 \
			>/dev/null 2>"$tmp/time.$i"
		wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tmp/time.$i")
		rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.$i")
		cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$tmp/time.$i")
		echo "run $i: wall $wall, cpu ${cpu}s, peak RSS ${rss} KiB"
		echo "$wall $rss" >>"$tmp/runs"
	done
	awk '{ split($1, p, ":"); s = (length(p) == 3) ? p[1]*3600 + p[2]*60 + p[3] : p[1]*60 + p[2]; print s, $2 }' "$tmp/runs" |
		sort -n | awk '{ w[NR] = $1; if ($2 > r) r = $2 } END { printf "median wall %.2f s, max peak RSS %.1f MiB, model %s\n", w[3], r/1024, "'"$(du -h "$model" | cut -f1)"'" }'
	echo
fi
if [ "$what" = latency ] || [ "$what" = all ]; then
	echo "== latency by residual and ratio (no rounding)"
	go run ./bench/compress/latency -ratios 0.5,0.25,0.125 -residuals none,identity,diag,dw3 -time "${LATENCY_TIME:-2s}"
	echo
	echo "== latency with --multiple 16"
	go run ./bench/compress/latency -ratios 0.25,0.125 -residuals none,identity,diag,dw3 -multiple 16 -time "${LATENCY_TIME:-2s}"
	echo
fi
if [ "$what" = accuracy ] || [ "$what" = all ]; then
	echo "== top-1 before fine-tuning"
	go run ./bench/compress/accuracy -ratios 0.5,0.25,0.125 -residuals none,identity,diag,dw3 -force
fi
