#!/bin/sh
# The PyTorch round trip of issue 14 against lprconv's own fine-tuning, on
# the 60,000 Fashion-MNIST training images (1 epoch, CPU).
#
# For MODEL (testdata/models/M.onnx): lprconv compress writes the LPR student
# (rank ratio 0.25, diag residual, data-aware initialization) untrained
# (--steps 1 --lr 1e-12, as bench/finetune/run.sh does) and fine-tuned (1
# epoch, lprconv's defaults); export-torch writes the untrained student with
# the original as teacher; distill.py trains it for 1 epoch under
# torch.distributed.run with 2 CPU processes (gloo) of batch 32, the same
# global batch of 64; import-torch writes it back (verified against
# PyTorch's probe outputs in the engine and ONNX Runtime); orteval scores
# the original, the untrained, lprconv's and PyTorch's students on the
# 10,000 test images in ONNX Runtime. --val-fraction 0 for both, so both
# train on the same 60,000 images.
#
#   bench/torchexport/roundtrip.sh [MODEL...]   (default: mobilenetv1 shufflenetv2)
#   env: OUTDIR (default a new temporary folder), ONNXRUNTIME_LIB
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUTDIR:-$(mktemp -d)}
DATA=/usr/share/datasets/fashion-mnist
: "${ONNXRUNTIME_LIB:=$HOME/.cache/lprconv/ort/1.24.3/libonnxruntime.so.1}"
export ONNXRUNTIME_LIB
go build -o "$OUT/lprconv" ./cmd/lprconv
go build -o "$OUT/lprconv-ort" ./cmd/lprconv
go build -o "$OUT/orteval" ./bench/finetune/orteval
COMMON="--rank-ratio 0.25 --data $DATA --split train --fit pad --mean 0.286 --std 0.353 --val-fraction 0 --threads 2"
printf '| model | original | LPR before tuning | lprconv 1 epoch | PyTorch DDP 2x32, 1 epoch | difference | lprconv wall | PyTorch wall |\n|---|---|---|---|---|---|---|---|\n'
for M in ${*:-mobilenetv1 shufflenetv2}; do
  O=$OUT/$M
  mkdir -p "$O"
  # shellcheck disable=SC2086
  "$OUT/lprconv" compress "testdata/models/$M.onnx" -o "$O/init.onnx" --overwrite $COMMON --steps 1 --lr 1e-12 >"$O/init.log" 2>&1
  # shellcheck disable=SC2086
  /usr/bin/time -f '%e' -o "$O/lprconv.time" "$OUT/lprconv" compress "testdata/models/$M.onnx" -o "$O/lprconv.onnx" --overwrite $COMMON --epochs 1 >"$O/lprconv.log" 2>&1
  rm -rf "$O/pkg"
  "$OUT/lprconv" export-torch "$O/init.onnx" --teacher "testdata/models/$M.onnx" -o "$O/pkg" --fit pad --mean 0.286 --std 0.353 --val-fraction 0 >"$O/export.log"
  (cd "$O/pkg" && /usr/bin/time -f '%e' -o "$O/torch.time" /usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 \
    --redirects 0:1 --tee 0:1 distill.py --cpu --backend gloo --threads 1 --workers 0 --data "$DATA" --split train \
    --epochs 1 --batch 32 --val-fraction 0 --log-every 200 --out run >"$O/torch.log" 2>&1)
  "$OUT/lprconv-ort" import-torch "$O/pkg/run/weights.safetensors" --into "$O/init.onnx" -o "$O/torch.onnx" --overwrite >"$O/import.log"
  "$OUT/orteval" "testdata/models/$M.onnx" "$O/init.onnx" "$O/lprconv.onnx" "$O/torch.onnx" >"$O/acc"
  acc() { sed -n "${1}p" "$O/acc" | cut -f1; }
  printf '| %s | %s | %s | %s | %s | %+.2f | %s s | %s s |\n' "$M" "$(acc 1)" "$(acc 2)" "$(acc 3)" "$(acc 4)" \
    "$(echo "$(acc 4) - $(acc 3)" | bc)" "$(cat "$O/lprconv.time")" "$(cat "$O/torch.time")"
done
printf '\noutputs in %s (import-torch verification in */import.log)\n' "$OUT"
