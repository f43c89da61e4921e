#!/bin/bash
# Faster forms (package fastform) before and after, on every fixture and the
# ImageNet-shaped MobileNetV1 1.0 and ShuffleNetV2 x1.0: each model is
# compressed by the CLI with its defaults twice, with --keep-forms ("before")
# and without ("after"), and both are timed against the original in ONNX
# Runtime (1 intra-op thread, process CPU time, interleaved; paired ratio
# medians with 95% intervals) at batch 1 and 64. compress's latency-aware
# planning is on, as for users; its decisions are printed per model.
#
#   bash bench/compress/ortlatency/forms.sh [OUTDIR]
#
# BEFORE replaces the "before" flags (default --keep-forms; relabel/latency.sh
# sets --relabel off), MODELS the list of models.
#
# Needs $ONNXRUNTIME_LIB (or the .ci/run cache) and the ImageNet-shaped
# exports (testdata/gen/export_imagenet.py).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
go build -o "$out/lprconv" ./cmd/lprconv
go build -o "$out/ortlatency" ./bench/compress/ortlatency
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) commit $(git rev-parse --short HEAD)"
for m in ${MODELS:-testdata/models/*.onnx "$imagenet/mobilenetv1_1.0.onnx" "$imagenet/shufflenetv2_x1.0.onnx"}; do
	b=$(basename "$m" .onnx)
	# shellcheck disable=SC2086
	"$out/lprconv" compress "$m" -o "$out/$b.before.onnx" --overwrite ${BEFORE:---keep-forms} >"$out/$b.before.txt"
	"$out/lprconv" compress "$m" -o "$out/$b.after.onnx" --overwrite >"$out/$b.after.txt"
	for v in before after; do
		echo "== $b $v: $(grep -E '^(MACs|forms)' "$out/$b.$v.txt" | tr -s ' ' | tr '\n' ';') $(grep 'planned by latency' "$out/$b.$v.txt" | sed 's/^ *//')"
	done
	case $m in
	testdata/*)
		"$out/ortlatency" -time 3s -batches 1,64 "$m" "$out/$b.before.onnx" "$out/$b.after.onnx" ;;
	*)
		"$out/ortlatency" -time 8s -sessions 2 -batches 1 "$m" "$out/$b.before.onnx" "$out/$b.after.onnx"
		"$out/ortlatency" -time 40s -sessions 2 -warmup 1 -min-rounds 8 -batches 64 "$m" "$out/$b.before.onnx" "$out/$b.after.onnx" ;;
	esac
done
