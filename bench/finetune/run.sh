#!/bin/sh
# lprconv compress fine-tuning against the same recipe in PyTorch.
#
# For each model: lprconv compress --data fine-tunes an LPR student (rank
# ratio 0.25, diag residual, data-aware initialization); the same student
# before fine-tuning (written by the same command with --steps 1 --lr 1e-12,
# which leaves the data-aware factors unchanged to ~1e-11) is trained by
# torch_distill.py with the same data, epochs, batch, Adam, warm-up + cosine
# schedule and KD loss. Both run on 2 threads; --val-fraction 0 so both train
# on exactly the same images. Every model is scored by ONNX Runtime on the
# 10,000 Fashion-MNIST test images (orteval/).
#
#   bench/finetune/run.sh [1k|60k] [MODEL...]
#     1k  (default): the 1,000 committed images testdata/images/train, EPOCHS=10
#     60k: the 60,000 Fashion-MNIST training images, EPOCHS=1
#   env: EPOCHS, BATCH, LR, TEMP, LOSS (default: lprconv's defaults), OUTDIR, LPRCONV (a built lprconv),
#        EXTRA (more compress flags for both students, e.g. "--multiple 1")
set -eu
cd "$(dirname "$0")/../.."
SET=${1:-1k}
[ $# -gt 0 ] && shift
case $SET in
  1k) DATA="testdata/images/train"; EPOCHS=${EPOCHS:-10} ;;
  60k) DATA="/usr/share/datasets/fashion-mnist"; EPOCHS=${EPOCHS:-1} ;;
  *) echo "usage: $0 [1k|60k] [MODEL...]" >&2; exit 2 ;;
esac
MODELS=${*:-"testdata/models/mobilenetv1.onnx testdata/models/shufflenetv2.onnx"}
OUT=${OUTDIR:-$(mktemp -d)}
BIN=${LPRCONV:-$OUT/lprconv}
ORT=$OUT/orteval
[ -n "${LPRCONV:-}" ] || go build -o "$BIN" ./cmd/lprconv
go build -o "$ORT" ./bench/finetune/orteval
RECIPE=""
[ -n "${BATCH:-}" ] && RECIPE="$RECIPE --batch $BATCH"
[ -n "${LR:-}" ] && RECIPE="$RECIPE --lr $LR"
[ -n "${TEMP:-}" ] && RECIPE="$RECIPE --temperature $TEMP"
[ -n "${LOSS:-}" ] && RECIPE="$RECIPE --loss $LOSS"
COMMON="--rank-ratio 0.25 --data $DATA --split train --fit pad --mean 0.286 --std 0.353 --val-fraction 0 --threads 2 ${EXTRA:-}"
json() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

printf 'set %s, %s epoch(s), outputs in %s\n\n' "$SET" "$EPOCHS" "$OUT"
printf '| model | original | LPR before tuning | lprconv | PyTorch | lprconv img/s | PyTorch img/s | throughput ratio | lprconv img/CPU-s | PyTorch img/CPU-s | CPU ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for m in $MODELS; do
  name=$(basename "$m" .onnx)
  # shellcheck disable=SC2086
  /usr/bin/time -f '%U %S' -o "$OUT/$name.lprconv.cpu" "$BIN" compress "$m" -o "$OUT/$name.lprconv.onnx" --overwrite $COMMON --epochs "$EPOCHS" $RECIPE --json >"$OUT/$name.lprconv.json" 2>"$OUT/$name.lprconv.log"
  # shellcheck disable=SC2086
  "$BIN" compress "$m" -o "$OUT/$name.init.onnx" --overwrite $COMMON --steps 1 --lr 1e-12 $(echo "$RECIPE" | sed 's/--lr [^ ]*//') --json >"$OUT/$name.init.json" 2>"$OUT/$name.init.log"
  lr=${LR:-$("$BIN" compress --help | sed -n 's/.*--lr value.*(default: \([^)]*\)).*/\1/p')}
  temp=${TEMP:-$("$BIN" compress --help | sed -n 's/.*--temperature value.*(default: \([^)]*\)).*/\1/p')}
  loss=${LOSS:-$("$BIN" compress --help | sed -n 's/.*--loss value.*(default: "\([^"]*\)").*/\1/p')}
  batch=${BATCH:-$("$BIN" compress --help | sed -n 's/.*--batch SIZE.*(default: \([^)]*\)).*/\1/p')}
  /usr/bin/python3 bench/finetune/torch_distill.py --teacher "$m" --student "$OUT/$name.init.onnx" --data "$DATA" --split train \
    --epochs "$EPOCHS" --batch "$batch" --lr "$lr" --temperature "$temp" --loss "$loss" --threads 2 -o "$OUT/$name.torch.onnx" >"$OUT/$name.torch.json"
  "$ORT" "$m" "$OUT/$name.init.onnx" "$OUT/$name.lprconv.onnx" "$OUT/$name.torch.onnx" >"$OUT/$name.acc"
  acc() { sed -n "${1}p" "$OUT/$name.acc" | cut -f1; }
  gips=$(json "$OUT/$name.lprconv.json" "round(d['finetune']['training']['images_per_second'], 1)")
  tips=$(json "$OUT/$name.torch.json" "d['images_per_s']")
  ratio=$(echo "scale=2; $gips / $tips" | bc)
  # lprconv's CPU time is the whole command's (planning, calibration, initialization
  # and training), so its images per CPU-second are understated.
  imgs=$(json "$OUT/$name.lprconv.json" "d['finetune']['training']['steps'] * $batch")
  gcpu=$(awk -v n="$imgs" '{printf "%.1f", n / ($1 + $2)}' "$OUT/$name.lprconv.cpu")
  tcpu=$(json "$OUT/$name.torch.json" "d['images_per_cpu_s']")
  cratio=$(echo "scale=2; $gcpu / $tcpu" | bc)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(acc 1)" "$(acc 2)" "$(acc 3)" "$(acc 4)" "$gips" "$tips" "$ratio" "$gcpu" "$tcpu" "$cratio"
done
printf '\nrecipe: batch %s, lr %s, temperature %s, loss %s, Adam, 5%% warm-up + cosine, LPR tensors only; compress flags: %s\n' "$batch" "$lr" "$temp" "$loss" "$COMMON"
