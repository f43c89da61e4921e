#!/usr/bin/env bash
# Runs few-image recipes (bench/finetune/fewshot) and scores each model with
# ONNX Runtime on the 10,000 Fashion-MNIST test images (orteval).
#
#   OUTDIR=/tmp/fs/runs bench/finetune/fewshot.sh CONFIGS
#
# CONFIGS has one run per line: NAME MODEL SEED FLAGS... (MODEL: m for
# MobileNetV1 with default ranks, s for ShuffleNetV2 with exact ranks, d for
# ShuffleNetV2 with default ranks).
# Each run appends one JSON line (fewshot's output plus "top1") to
# $OUTDIR/results.jsonl; runs already there are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${OUTDIR:-/tmp/fs/runs}
mkdir -p "$OUTDIR"
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-/root/.cache/lprconv/ort/1.24.3/libonnxruntime.so.1}
go build -o "$OUTDIR/fewshot" ./bench/finetune/fewshot
go build -o "$OUTDIR/orteval" ./bench/finetune/orteval
touch "$OUTDIR/results.jsonl"
while read -r name model seed flags; do
	[[ -z "$name" || "$name" == \#* ]] && continue
	id="$name-$model-$seed"
	grep -q "\"id\":\"$id\"" "$OUTDIR/results.jsonl" && continue
	case $model in
	m) mflags="-model testdata/models/mobilenetv1.onnx" ;;
	s) mflags="-model testdata/models/shufflenetv2.onnx -multiple 1 -channel-align 1" ;;
	d) mflags="-model testdata/models/shufflenetv2.onnx" ;;
	*) echo "unknown model $model" >&2; exit 2 ;;
	esac
	# shellcheck disable=SC2086
	js=$("$OUTDIR/fewshot" $mflags -data-seed "$seed" -threads 2 -o "$OUTDIR/$id.onnx" $flags)
	top1=$("$OUTDIR/orteval" "$OUTDIR/$id.onnx" | cut -f1)
	echo "{\"id\":\"$id\",\"top1\":$top1,${js#\{}" >>"$OUTDIR/results.jsonl"
	rm -f "$OUTDIR/$id.onnx"
	echo "$id $top1"
done <"$1"
