#!/bin/bash
# Relabeled channels (package chanperm) before and after, in ONNX Runtime:
# every fixture and the ImageNet-shaped MobileNetV1 1.0 (both exports) and
# ShuffleNetV2 x1.0 are compressed by the CLI with its defaults twice, with
# --relabel off ("before", what 8415524 wrote) and with the default, which
# relabels a data-free compression ("after"), and both are timed against
# the original (1 intra-op thread, process CPU time, interleaved; paired
# ratio medians with 95% intervals) at batch 1 and 64. compress's
# latency-aware planning is on, as for users; its decisions and MACs are
# printed per model. It is ortlatency/forms.sh with other "before" flags.
#
#   bash bench/compress/relabel/latency.sh [OUTDIR]
#
# Needs $ONNXRUNTIME_LIB (or the .ci/run cache) and the ImageNet-shaped
# exports (testdata/gen/export_imagenet.py).
set -euo pipefail
cd "$(dirname "$0")/../../.."
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
BEFORE="--relabel off" MODELS=${MODELS:-"$(echo testdata/models/*.onnx) $imagenet/mobilenetv1_1.0.onnx $imagenet/mobilenetv1_1.0_calib.onnx $imagenet/shufflenetv2_x1.0.onnx"} \
	exec bash bench/compress/ortlatency/forms.sh "$@"
