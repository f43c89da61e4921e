#!/bin/bash
# Shape folding (package shapefold), faster forms (package fastform) and LPR,
# separated: for the ShuffleNetV2 fixture and the ImageNet-shaped
# ShuffleNetV2 x1.0, times in ONNX Runtime (1 thread, process CPU time,
# interleaved) against the original:
#   folded    the original with its shape arithmetic folded, no layer replaced
#             (compress --exclude . --keep-forms), the folding alone;
#   forms     the same with the faster forms (compress --exclude .): folding
#             and the channel-shuffle rewrite, no LPR module;
#   lpr-keep  compress's output with --keep-shape-ops --keep-forms, LPR alone;
#   default   compress's default output (LPR, folding and forms), what users
#             get.
# Every output is compressed without latency planning (--no-latency) so that
# the three differ only in what they name.
#
#   bash bench/compress/ortlatency/fold.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/shufflenetv2_x1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
go build -o "$out/lprconv" ./cmd/lprconv
go build -o "$out/ortlatency" ./bench/compress/ortlatency
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) commit $(git rev-parse --short HEAD)"
for m in testdata/models/shufflenetv2.onnx "$imagenet/shufflenetv2_x1.0.onnx"; do
	b=$(basename "$m" .onnx)
	"$out/lprconv" compress "$m" -o "$out/$b.folded.onnx" --overwrite --no-latency --exclude . --keep-forms >/dev/null
	"$out/lprconv" compress "$m" -o "$out/$b.forms.onnx" --overwrite --no-latency --exclude . >/dev/null
	"$out/lprconv" compress "$m" -o "$out/$b.lpr-keep.onnx" --overwrite --no-latency --keep-shape-ops --keep-forms >/dev/null
	"$out/lprconv" compress "$m" -o "$out/$b.default.onnx" --overwrite --no-latency >/dev/null
	echo "== $b: models 1 folded, 2 forms (no LPR), 3 lpr-keep (--keep-shape-ops --keep-forms), 4 default"
	case $m in
	testdata/*)
		"$out/ortlatency" -time 3s -batches 1,64 "$m" "$out/$b.folded.onnx" "$out/$b.forms.onnx" "$out/$b.lpr-keep.onnx" "$out/$b.default.onnx" ;;
	*)
		"$out/ortlatency" -time 8s -sessions 2 -batches 1 "$m" "$out/$b.folded.onnx" "$out/$b.forms.onnx" "$out/$b.lpr-keep.onnx" "$out/$b.default.onnx"
		"$out/ortlatency" -time 20s -sessions 1 -warmup 1 -min-rounds 6 -batches 64 "$m" "$out/$b.folded.onnx" "$out/$b.forms.onnx" "$out/$b.lpr-keep.onnx" "$out/$b.default.onnx" ;;
	esac
done
