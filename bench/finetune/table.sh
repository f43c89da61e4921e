#!/bin/sh
# Accuracy table of lprconv compress fine-tuning: every model x residual x
# rank ratio (exact ranks: --multiple 1 --channel-align 1; ratio 0.5 with
# --force, where the module is not smaller than the layer), plus --train all,
# with the fine-tuning defaults. Top-1 by ONNX Runtime on the 10,000
# Fashion-MNIST test images. Prints a Markdown table.
#
#   bench/finetune/table.sh [1k|60k]     (env: RATIOS, RESIDUALS, MODELS, EPOCHS, OUTDIR, LPRCONV (a built lprconv))
#     1k: the 1,000 committed images, EPOCHS=10; 60k (default): the 60,000 training images, EPOCHS=1
set -eu
cd "$(dirname "$0")/../.."
SET=${1:-60k}
case $SET in
  1k) DATA="--data testdata/images/train"; EPOCHS=${EPOCHS:-10} ;;
  60k) DATA="--data /usr/share/datasets/fashion-mnist --split train"; EPOCHS=${EPOCHS:-1} ;;
  *) echo "usage: $0 [1k|60k]" >&2; exit 2 ;;
esac
RATIOS=${RATIOS:-"0.5 0.25 0.125"}
RESIDUALS=${RESIDUALS:-"none identity diag dw3"}
MODELS=${MODELS:-"testdata/models/mobilenetv1.onnx testdata/models/shufflenetv2.onnx"}
OUT=${OUTDIR:-$(mktemp -d)}
BIN=${LPRCONV:-$OUT/lprconv}
ORT=$OUT/orteval
[ -n "${LPRCONV:-}" ] || go build -o "$BIN" ./cmd/lprconv
go build -o "$ORT" ./bench/finetune/orteval
printf 'set %s, %s epoch(s); outputs in %s\n\n' "$SET" "$EPOCHS" "$OUT"
printf '| model | residual | ratio | train | replaced | params | top-1 original | top-1 before | top-1 after | delta | seconds | img/s | peak RSS MiB |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
row() { # model residual ratio train
  m=$1; name=$(basename "$m" .onnx); o=$OUT/${name}_$2_$3_$4.onnx
  force=""; [ "$3" = 0.5 ] && force="--force"
  s=$(date +%s)
  # shellcheck disable=SC2086
  "$BIN" compress "$m" -o "$o" --overwrite --residual "$2" --rank-ratio "$3" --multiple 1 --channel-align 1 $force \
    $DATA --fit pad --mean 0.286 --std 0.353 --epochs "$EPOCHS" --train "$4" --threads 2 --json >"$o.json" 2>"$o.log"
  e=$(date +%s)
  "$ORT" "$m" "$o" >"$o.acc"
  /usr/bin/python3 - "$o.json" "$o.acc" "$name" "$2" "$3" "$4" "$((e - s))" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); acc = [l.split()[0] for l in open(sys.argv[2])]
ft = d["finetune"]; tr = ft["training"]
before = ft.get("val_top1_before")
print("| %s | %s | %s | %s | %d/%d | %.3f | %s | %s | %s | %+.2f | %s | %.0f | %.0f |" % (
    sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], d["replaced"], len(d["layers"]), d["params_ratio"],
    acc[0], "%.2f (val)" % before if before is not None else "-", acc[1], float(acc[1]) - float(acc[0]),
    sys.argv[7], tr["images_per_second"], ft.get("peak_rss_bytes", 0) / 2**20))
PY
}
for m in $MODELS; do
  for res in $RESIDUALS; do for r in $RATIOS; do row "$m" "$res" "$r" lpr; done; done
  row "$m" diag 0.25 all
done
