#!/bin/bash
# Latency of `lprconv compress` outputs against their originals in ONNX
# Runtime, through package ortapi (bench/compress/ortlatency): every fixture
# and the ImageNet-shaped MobileNetV1 1.0 and ShuffleNetV2 x1.0 are
# compressed by the CLI with its defaults and with exact ranks
# (--multiple 1), then timed at batch 1 and 64 on one thread, with the
# node types of ONNX Runtime's optimized graphs; for the ImageNet-shaped
# models also every candidate layer alone against its LPR module alone.
#
#   bash bench/compress/ortlatency/run.sh [OUTDIR]
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
for m in testdata/models/*.onnx "$imagenet/mobilenetv1_1.0.onnx" "$imagenet/shufflenetv2_x1.0.onnx"; do
	b=$(basename "$m" .onnx)
	"$out/lprconv" compress "$m" -o "$out/$b.default.onnx" --overwrite >"$out/$b.default.txt"
	"$out/lprconv" compress "$m" -o "$out/$b.exact.onnx" --overwrite --multiple 1 >"$out/$b.exact.txt"
	echo "== $b: MACs default $(grep '^MACs' "$out/$b.default.txt" | awk '{print $NF}'), exact $(grep '^MACs' "$out/$b.exact.txt" | awk '{print $NF}')"
	case $m in
	testdata/*)
		"$out/ortlatency" -time 3s -optimized "$m" "$out/$b.default.onnx" "$out/$b.exact.onnx" ;;
	*)
		"$out/ortlatency" -time 8s -sessions 2 -batches 1 -optimized "$m" "$out/$b.default.onnx" "$out/$b.exact.onnx"
		"$out/ortlatency" -time 20s -sessions 1 -warmup 1 -min-rounds 6 -batches 64 "$m" "$out/$b.default.onnx" "$out/$b.exact.onnx"
		"$out/ortlatency" -isolated -time 1s -sessions 1 -min-rounds 8 -warmup 2 "$m" ;;
	esac
done
