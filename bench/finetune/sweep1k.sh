#!/bin/sh
# Hyper-parameter sweep of lprconv compress fine-tuning on the 1,000
# committed training images (testdata/images/train), rank ratio 0.25, diag
# residual; each student is scored by ONNX Runtime on the 10,000 Fashion-MNIST
# test images (bench/finetune/orteval). Prints one TSV line per run.
#
#   bench/finetune/sweep1k.sh [MODEL...]   (env: EPOCHS, LRS, LOSSES, TEMPS, BATCHES,
#       EXTRA: more compress flags, e.g. "--multiple 1" for exact ranks)
set -eu
cd "$(dirname "$0")/../.."
BIN=${BIN:-/tmp/lprconv-bench}
ORT=${ORT:-/tmp/orteval-bench}
go build -o "$BIN" ./cmd/lprconv
go build -o "$ORT" ./bench/finetune/orteval
OUT=${OUTDIR:-$(mktemp -d)}
EPOCHS=${EPOCHS:-10}
LRS=${LRS:-"1e-3 2e-3 5e-3"}
LOSSES=${LOSSES:-"kd kd+ce"}
TEMPS=${TEMPS:-"1 2 4"}
BATCHES=${BATCHES:-"64 128"}
MODELS=${*:-"testdata/models/mobilenetv1.onnx testdata/models/shufflenetv2.onnx"}
printf 'model\tepochs\tbatch\tlr\tloss\tT\ttop1\tseconds\n'
for m in $MODELS; do
  for b in $BATCHES; do for lr in $LRS; do for loss in $LOSSES; do for t in $TEMPS; do
    o=$OUT/$(basename "$m" .onnx)_${b}_${lr}_${loss}_${t}.onnx
    s=$(date +%s.%N)
    "$BIN" compress "$m" -o "$o" --overwrite --rank-ratio 0.25 --data testdata/images/train --fit pad --mean 0.286 --std 0.353 \
      --epochs "$EPOCHS" --batch "$b" --lr "$lr" --loss "$loss" --temperature "$t" --threads 2 ${EXTRA:-} >"$o.log" 2>&1
    e=$(date +%s.%N)
    acc=$("$ORT" "$o" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\n' "$(basename "$m" .onnx)" "$EPOCHS" "$b" "$lr" "$loss" "$t" "$acc" "$(echo "$e - $s" | bc)"
  done; done; done; done
done
