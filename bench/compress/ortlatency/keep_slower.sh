#!/bin/bash
# Latency-aware planning, before and after (issue 12): every fixture and
# the ImageNet-shaped MobileNetV1 1.0 and ShuffleNetV2 x1.0 are compressed
# by the CLI with its defaults twice, with --keep-slower (every layer the
# rank rule replaces, "before") and without (layers whose module ONNX
# Runtime measures no faster are kept, "after"); then both outputs are
# timed against the original by ortlatency at batch 1 and 64 on one
# thread (process CPU time). compress's own JSON (MACs ratio, layers
# kept, its measurement and the time it added) is kept in OUTDIR.
#
#   bash bench/compress/ortlatency/keep_slower.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || imagenet=/root/.cache/lprconv/imagenet
go build -o "$out/lprconv" ./cmd/lprconv
go build -o "$out/ortlatency" ./bench/compress/ortlatency
summary() { # JSON file -> "MACs kept/timed self-measured ratios seconds"
	/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); l = d.get("latency") or {}
kept = sum(1 for x in l.get("layers") or [] if x["kept"])
rs = " ".join("b%d=%.3f" % (b["batch"], b["ratio"]) for b in l.get("batches") or [])
print("macs %.3f replaced %d kept %d/%d self [%s] added %.1fs wall %.1fs cpu" % (d["macs_ratio"], d["replaced"], kept, len(l.get("layers") or []), rs or l.get("reason", ""), l.get("seconds", 0), l.get("cpu_seconds", 0)))' "$1"
}
for m in testdata/models/*.onnx "$imagenet/mobilenetv1_1.0.onnx" "$imagenet/shufflenetv2_x1.0.onnx"; do
	b=$(basename "$m" .onnx)
	"$out/lprconv" compress "$m" -o "$out/$b.before.onnx" --overwrite --keep-slower --json >"$out/$b.before.json"
	"$out/lprconv" compress "$m" -o "$out/$b.after.onnx" --overwrite --json >"$out/$b.after.json"
	echo "== $b before: $(summary "$out/$b.before.json")"
	echo "== $b after:  $(summary "$out/$b.after.json")"
	batches=1,64
	case $b in *_op9) [ "$b" = shufflenetv2_op9 ] && batches=1 ;; esac
	case $m in
	testdata/*)
		"$out/ortlatency" -time 3s -batches "$batches" "$m" "$out/$b.before.onnx" "$out/$b.after.onnx" ;;
	*)
		"$out/ortlatency" -time 8s -sessions 2 -batches 1 "$m" "$out/$b.before.onnx" "$out/$b.after.onnx"
		"$out/ortlatency" -time 20s -sessions 1 -warmup 1 -min-rounds 6 -batches 64 "$m" "$out/$b.before.onnx" "$out/$b.after.onnx" ;;
	esac
done
