#!/usr/bin/env bash
# Issue 15's measurement: fine-tuned LPR models (rank ratio 0.25, 60,000
# images, 1 epoch), their originals, and the fp16 and int8 exports of each,
# evaluated by ONNX Runtime on the 10,000 Fashion-MNIST test images
# (bench/finetune/orteval). Then sizes, 500-image accuracy and latency of
# the same files (go run ./bench/quantize -models DIR).
#
#   ONNXRUNTIME_LIB=... bash bench/quantize/run.sh [OUT_DIR] [METHODS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${1:-bench/out/quantize}
METHODS=${2:-"minmax percentile"}
DATA=/usr/share/datasets/fashion-mnist
FLAGS=(--fit pad --mean 0.286 --std 0.353)
mkdir -p "$OUT"
go build -o "$OUT/lprconv" ./cmd/lprconv
for M in mobilenetv1 shufflenetv2; do
	cp "testdata/models/$M.onnx" "$OUT/${M}_fp32.onnx"
	if [ ! -s "$OUT/${M}_lpr_fp32.onnx" ]; then
		"$OUT/lprconv" compress "testdata/models/$M.onnx" -o "$OUT/${M}_lpr_fp32.onnx" --rank-ratio 0.25 \
			--data "$DATA" --split train "${FLAGS[@]}" --threads 2 >"$OUT/${M}_lpr_compress.log" 2>&1
	fi
	for V in "$M" "${M}_lpr"; do
		"$OUT/lprconv" quantize "$OUT/${V}_fp32.onnx" -o "$OUT/${V}_fp16.onnx" --precision fp16 --overwrite >/dev/null
		for METH in $METHODS; do
			"$OUT/lprconv" quantize "$OUT/${V}_fp32.onnx" -o "$OUT/${V}_int8_$METH.onnx" --precision int8 --method "$METH" \
				--data "$DATA" --split train "${FLAGS[@]}" --samples 1000 --overwrite >/dev/null
		done
	done
done
go run ./bench/finetune/orteval "$OUT"/*_fp32.onnx "$OUT"/*_fp16.onnx "$OUT"/*_int8_*.onnx | tee "$OUT/t10k.txt"
