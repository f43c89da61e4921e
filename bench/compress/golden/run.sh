#!/bin/bash
# Writes the six compress outputs used to check that a restructuring keeps
# compress's results byte-identical: data-free, a 20-step fine-tune (seed 3)
# and a params=0.9 budget, on both fixtures. Run it with two binaries and
# compare the folders:
#
#   git worktree add /tmp/base OLD && (cd /tmp/base && go build -o /tmp/old ./cmd/lprconv)
#   go build -o /tmp/new ./cmd/lprconv
#   bash bench/compress/golden/run.sh /tmp/old /tmp/a && bash bench/compress/golden/run.sh /tmp/new /tmp/b "--no-latency --threads 1"
#   for f in /tmp/a/*.onnx; do cmp "$f" /tmp/b/$(basename "$f"); done
#
# EXTRA (third argument) is added to every command of the second binary:
# builds from before latency-aware planning (issue 12) need none; later ones
# need --no-latency where ONNX Runtime is installed, and --threads 1 to keep
# fine-tuning's gradient sums in one order (batch-parallel training reduces
# per-slice gradients in slice order, so 2 threads round differently).
set -euo pipefail
bin=$1 out=$2 extra=${3:-}
cd "$(dirname "$0")/../../.."
mkdir -p "$out"
for m in mobilenetv1 shufflenetv2; do
	# shellcheck disable=SC2086
	"$bin" compress testdata/models/$m.onnx -o "$out/${m}_free.onnx" --overwrite --json $extra >"$out/${m}_free.json" 2>/dev/null
	# shellcheck disable=SC2086
	"$bin" compress testdata/models/$m.onnx -o "$out/${m}_ft.onnx" --overwrite --data testdata/images/train \
		--mean 0.286 --std 0.353 --steps 20 --seed 3 --json $extra >"$out/${m}_ft.json" 2>/dev/null
	# shellcheck disable=SC2086
	"$bin" compress testdata/models/$m.onnx -o "$out/${m}_bud.onnx" --overwrite --budget params=0.9 --json $extra >"$out/${m}_bud.json" 2>/dev/null
done
sha256sum "$out"/*.onnx
