#!/bin/bash
# Relabeled channels (package chanperm) against the given channel order:
# data-free compress of each Fashion-MNIST fixture at rank ratios 1/4 and
# 1/8, with the default ranks and with exact ranks (--multiple 1
# --channel-align 1), once with --relabel off and once without; each output
# is scored by ONNX Runtime on the 10,000 test images (top-1, %), next to
# what relabeling reports. Latency planning is off (--no-latency) so that
# both runs replace the same layers.
#
#   bash bench/compress/relabel/accuracy.sh [OUTDIR]
#
# Needs $ONNXRUNTIME_LIB (or the .ci/run cache) and Debian's
# dataset-fashion-mnist (orteval reads its test split).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/ort/1.24.3/libonnxruntime.so.1}
go build -o "$out/lprconv" ./cmd/lprconv
go build -o "$out/orteval" ./bench/finetune/orteval
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)"
echo "| model | ranks | ratio | original | given order | relabeled | change | relabeling |"
echo "|---|---|---|---|---|---|---|---|"
for m in ${MODELS:-mobilenetv1 shufflenetv2 mobilenetv1_bn shufflenetv2_bn}; do
	orig=$("$out/orteval" "testdata/models/$m.onnx" | cut -f1)
	for ranks in default exact; do
		flags=""
		[ "$ranks" = exact ] && flags="--multiple 1 --channel-align 1"
		for ratio in 0.25 0.125; do
			id="$m.$ranks.$ratio"
			# shellcheck disable=SC2086
			"$out/lprconv" compress "testdata/models/$m.onnx" -o "$out/$id.keep.onnx" --overwrite --no-latency --rank-ratio "$ratio" $flags --relabel off >"$out/$id.keep.txt"
			# shellcheck disable=SC2086
			"$out/lprconv" compress "testdata/models/$m.onnx" -o "$out/$id.perm.onnx" --overwrite --no-latency --rank-ratio "$ratio" $flags >"$out/$id.perm.txt"
			a=$("$out/orteval" "$out/$id.keep.onnx" | cut -f1)
			b=$("$out/orteval" "$out/$id.perm.onnx" | cut -f1)
			note=$(grep '^channels:' "$out/$id.perm.txt" | sed 's/^channels: *//; s/ (--relabel off.*//')
			echo "| $m | $ranks | $ratio | $orig | $a | $b | $(echo "$b - $a" | bc) | $note |"
		done
	done
done
