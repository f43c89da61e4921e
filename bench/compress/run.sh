#!/bin/bash
# Benchmarks of data-free `lprconv compress` (bench/compress).
#
#   bash bench/compress/run.sh [speed|latency|imagenet|accuracy|all]   (default all)
#
# speed:    times `lprconv compress IMAGENET/mobilenetv1_1.0.onnx --rank-ratio 0.25`
#           5 times (median wall time, CPU time, peak RSS from /usr/bin/time -v).
# latency:  ONNX Runtime latency (1 thread, batch 1 and 64, original and
#           compressed interleaved; process CPU time) of every fixture at
#           ratios 1/2, 1/4, 1/8 for each residual kind with exact ranks, with
#           the MAC ratio; then the fixtures with compress's defaults
#           (--multiple 16 --channel-align 4).
# imagenet: the same for the ImageNet-shaped MobileNetV1 1.0 and ShuffleNetV2
#           x1.0 at 224x224, batch 1 and 8.
# accuracy: top-1 on the 500 committed test images before fine-tuning, for
#           every fixture, residual kind and ratio (forced at 1/2, which is
#           the break-even rank), with exact ranks and with the defaults.
#
# Needs ONNX Runtime (see internal/ortrun) for latency and accuracy, and the
# ImageNet-shaped exports (testdata/gen/export_imagenet.py) for speed and
# imagenet. LATENCY_TIME sets the measuring time per configuration (2s).
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t=${LATENCY_TIME:-2s}
go build -o "$tmp/latency" ./bench/compress/latency
go build -o "$tmp/accuracy" ./bench/compress/accuracy

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
		echo "$wall $rss $cpu" >>"$tmp/runs"
	done
	wall=$(awk '{ n = split($1, p, ":"); print (n == 3) ? p[1]*3600 + p[2]*60 + p[3] : p[1]*60 + p[2] }' "$tmp/runs" | sort -n | sed -n 3p)
	cpu=$(awk '{ print $3 }' "$tmp/runs" | sort -n | sed -n 3p)
	rss=$(awk '{ print $2 }' "$tmp/runs" | sort -n | tail -1)
	echo "median wall ${wall} s, median CPU ${cpu} s, max peak RSS $((rss / 1024)) MiB"
	echo
fi
if [ "$what" = latency ] || [ "$what" = all ]; then
	echo "== fixtures: latency by residual and ratio (exact ranks)"
	"$tmp/latency" -ratios 0.5,0.25,0.125 -residuals none,identity,diag,dw3 -time "$t"
	echo
	echo "== fixtures: compress defaults (--multiple 16 --channel-align 4)"
	"$tmp/latency" -ratios 0.25,0.125 -residuals none,diag -multiple 16 -channel-align 4 -time "$t"
	echo
fi
if [ "$what" = imagenet ] || [ "$what" = all ]; then
	models="$imagenet/mobilenetv1_1.0.onnx,$imagenet/shufflenetv2_x1.0.onnx"
	for m in ${models//,/ }; do
		[ -f "$m" ] || { echo "missing $m; run testdata/gen/export_imagenet.py" >&2; exit 1; }
		echo "== $(basename "$m"): exact ranks"
		"$tmp/latency" -models "$m" -ratios 0.25 -residuals none,identity,diag,dw3 -batches 1,8 -time "$t"
		echo "== $(basename "$m"): compress defaults (--multiple 16 --channel-align 4)"
		"$tmp/latency" -models "$m" -ratios 0.25,0.125 -residuals none,diag -batches 1,8 -multiple 16 -channel-align 4 -time "$t"
		echo
	done
fi
if [ "$what" = accuracy ] || [ "$what" = all ]; then
	echo "== top-1 before fine-tuning (exact ranks)"
	"$tmp/accuracy" -ratios 0.5,0.25,0.125 -residuals none,identity,diag,dw3 -force
	echo
	echo "== top-1 before fine-tuning (compress defaults)"
	"$tmp/accuracy" -ratios 0.25,0.125 -residuals none,diag -multiple 16 -channel-align 4
fi
