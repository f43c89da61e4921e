#!/bin/bash
# lprconv's engine against ONNX Runtime (inference) and PyTorch (training),
# side by side in one run, for the default build and the purego build of
# engine/kernels; then the memory of `lprconv eval`. Prints a summary table
# of medians and ratios at the end.
#
#   bash bench/engine/run.sh [infer|scaling|train|finetune|memory|all]   (default all)
#
# Environment: REPS (alternating repetitions, default 11), INFER_MIN (least
# duration of one inference repetition, default 250ms), TRAIN_MIN (default
# 600ms), BUILDS (default "default purego"), ONNXRUNTIME_LIB, IMAGENET_DIR,
# FT_REPS (alternating 1- and 2-thread fine-tuning runs, default 3),
# FT_STEPS (steps of one fine-tuning run, default 150), FT_TORCH_STEPS
# (timed steps of one PyTorch fine-tuning run, default 40; 0 skips PyTorch).
#
# The fine-tuning section runs `lprconv compress --data --no-latency`:
# latency-aware planning keeps most layers of the 32x32 fixtures when ONNX
# Runtime is installed (MobileNetV1: 1 of 8 replaced, ShuffleNetV2: none,
# which leaves nothing to fine-tune), so --no-latency replaces every
# candidate that shrinks, for a run that trains every LPR module. PyTorch
# (torch_finetune.py) trains the student lprconv wrote, with the same
# objective (logits+modules), batch, optimizer and schedule, channels_last,
# at 1 and 2 threads, each the better of OpenMP's default and passive wait
# policies; the goal is lprconv's best over PyTorch's best >= 1.2.
#
# Scaling efficiency ("scale") is a case's engine throughput at its thread
# count over the same case's at 1 thread (2.00x is perfect at 2 threads);
# for inference it is the median of per-repetition ratios (the thread
# counts are interleaved in every repetition), and "cpuscale" is the CPU
# time per image at 1 thread over that at the thread count (1.00x: the
# threads add no work; independent of other load on the machine).
#
# Needs: Go and gcc (cgo for internal/ortrun), the ONNX Runtime 1.24.3
# library (see internal/ortrun), /usr/bin/python3 with torch and onnx
# (training reference, and regenerating the ImageNet-shaped model), and
# /usr/bin/time for peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
reps=${REPS:-11}
infer_min=${INFER_MIN:-250ms}
train_min=${TRAIN_MIN:-600ms}
builds=${BUILDS:-default purego}
imagenet=${IMAGENET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lprconv/imagenet}
[ -f "$imagenet/mobilenetv1_1.0.onnx" ] || [ ! -f /root/.cache/lprconv/imagenet/mobilenetv1_1.0.onnx ] || imagenet=/root/.cache/lprconv/imagenet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results

if [ ! -f "$imagenet/mobilenetv1_1.0.onnx" ]; then
	echo "== generating the ImageNet-shaped models into $imagenet" >&2
	/usr/bin/python3 testdata/gen/export_imagenet.py --out "$imagenet" >&2
fi
imagenet_model=$imagenet/mobilenetv1_1.0.onnx
[ -f "$imagenet_model" ] || { echo "missing $imagenet_model (testdata/gen/export_imagenet.py)" >&2; exit 1; }

echo "== build" >&2
for b in $builds; do
	tags=""
	[ "$b" = default ] || tags="-tags $b"
	# shellcheck disable=SC2086
	go build $tags -o "$tmp/bench-$b" ./bench/engine
done
go build -o "$tmp/lprconv" ./cmd/lprconv
# --no-latency: every layer the rank rule picks is replaced (with ONNX
# Runtime found, latency-aware planning keeps most of these 32x32 layers,
# which would leave the "LPR" models nearly the originals).
"$tmp/lprconv" compress testdata/models/mobilenetv1.onnx -o "$tmp/mobilenetv1_lpr.onnx" --no-latency >&2
"$tmp/lprconv" compress testdata/models/shufflenetv2.onnx -o "$tmp/shufflenetv2_lpr.onnx" --no-latency >&2

echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# go $(go env GOVERSION), reps $reps, inference repetitions >= $infer_min, training repetitions >= $train_min"

if [ "$what" = infer ] || [ "$what" = all ]; then
	for b in $builds; do
		echo
		echo "== inference, engine ($b build) vs ONNX Runtime"
		"$tmp/bench-$b" infer -label "$b" -reps "$reps" -min "$infer_min" -threads 1,2 \
			"$imagenet_model:1" testdata/models/mobilenetv1.onnx:64 testdata/models/shufflenetv2.onnx:64 \
			"$tmp/mobilenetv1_lpr.onnx:64" "$tmp/shufflenetv2_lpr.onnx:64" | tee -a "$results"
	done
fi

if [ "$what" = scaling ] || [ "$what" = all ]; then
	b=$(echo "$builds" | cut -d' ' -f1)
	echo
	echo "== scaling: engine at 2 threads over 1, next to 2 independent 1-thread programs on half batches (control)"
	"$tmp/bench-$b" scaling -reps "$reps" -threads 2 testdata/models/mobilenetv1.onnx:64 testdata/models/shufflenetv2.onnx:64 \
		"$tmp/mobilenetv1_lpr.onnx:64" "$tmp/shufflenetv2_lpr.onnx:64" | tee -a "$results"
fi

if [ "$what" = train ] || [ "$what" = all ]; then
	for b in $builds; do
		echo
		echo "== training step, engine ($b build) vs PyTorch"
		"$tmp/bench-$b" train -label "$b" -reps "$reps" -min "$train_min" -threads 2,1 \
			-torch bench/engine/torch_train.py testdata/models/mobilenetv1.onnx | tee -a "$results"
	done
fi

if [ "$what" = finetune ] || [ "$what" = all ]; then
	echo
	echo "== fine-tuning loop: lprconv compress --data --no-latency (LPR tensors, batch 64, ${FT_STEPS:-150} steps) vs PyTorch (torch_finetune.py, channels_last), 1 and 2 threads alternating"
	b=$(echo "$builds" | cut -d' ' -f1)
	"$tmp/bench-$b" npy -o "$tmp/small.npy" -n 4096 -shape 3,32,32
	for r in $(seq "${FT_REPS:-3}"); do
		for m in mobilenetv1 shufflenetv2; do
			for th in 1 2; do
				/usr/bin/time -v "$tmp/lprconv" compress "testdata/models/$m.onnx" -o "$tmp/ft.onnx" --overwrite --json \
					--data "$tmp/small.npy" --steps "${FT_STEPS:-150}" --val-fraction 0 --init weights --batch 64 --threads $th --no-latency \
					>"$tmp/ft.json" 2>"$tmp/ft.time"
				ips=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["finetune"]["training"]["images_per_second"])' "$tmp/ft.json")
				rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/ft.time")
				echo "$m threads $th: $ips img/s, peak RSS $rss KiB"
				echo "RESULT finetune model=$m threads=$th ips=$ips rss_kib=$rss" >>"$results"
				if [ "${FT_TORCH_STEPS:-40}" -gt 0 ]; then
					# PyTorch's better of OpenMP's default (spinning first) and passive wait
					# policy, as the training section does: passive fares better when
					# other processes share the cores
					for pol in default PASSIVE; do
						env $([ $pol = default ] || echo OMP_WAIT_POLICY=$pol) /usr/bin/python3 bench/engine/torch_finetune.py --teacher "testdata/models/$m.onnx" --student "$tmp/ft.onnx" \
							--threads $th --steps "${FT_TORCH_STEPS:-40}" --max-seconds 20 --batch 64 --format channels_last |
							/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])' >"$tmp/torch.$pol"
					done
					ta=$(cat "$tmp/torch.default") tp=$(cat "$tmp/torch.PASSIVE")
					tips=$(awk -v a="$ta" -v p="$tp" 'BEGIN { print (a + 0 > p + 0 ? a : p) }')
					echo "$m threads $th: PyTorch $tips img/s (OpenMP default $ta, passive $tp)"
					echo "RESULT finetune_torch model=$m threads=$th ips=$tips default=$ta passive=$tp" >>"$results"
				fi
			done
		done
	done
fi

if [ "$what" = memory ] || [ "$what" = all ]; then
	echo
	echo "== memory: lprconv eval $imagenet_model, batch 1, 8 random 3x224x224 images (NPY)"
	b=$(echo "$builds" | cut -d' ' -f1)
	"$tmp/bench-$b" npy -o "$tmp/images.npy" -n 8 -shape 3,224,224
	for th in 1 2; do
		/usr/bin/time -v "$tmp/lprconv" eval "$imagenet_model" --data "$tmp/images.npy" --batch 1 --threads $th \
			>"$tmp/eval.out" 2>"$tmp/eval.time"
		rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/eval.time")
		wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tmp/eval.time")
		echo "threads $th: peak RSS $rss KiB, wall $wall; $(grep throughput "$tmp/eval.out" | xargs)"
		echo "RESULT memory threads=$th rss_kib=$rss" >>"$results"
	done
	"$tmp/bench-$b" peak -batch 1 "$imagenet_model" | tee -a "$results"
	echo "== memory: lprconv eval testdata/models/mobilenetv1.onnx, batch 64, 1024 random 3x32x32 images (NPY)"
	"$tmp/bench-$b" npy -o "$tmp/small1k.npy" -n 1024 -shape 3,32,32
	for th in 1 2; do
		/usr/bin/time -v "$tmp/lprconv" eval testdata/models/mobilenetv1.onnx --data "$tmp/small1k.npy" --batch 64 --threads $th \
			>"$tmp/eval.out" 2>"$tmp/eval.time"
		rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/eval.time")
		echo "threads $th: peak RSS $rss KiB; $(grep throughput "$tmp/eval.out" | xargs)"
		echo "RESULT memory64 threads=$th rss_kib=$rss" >>"$results"
	done
	echo "model file: $(stat -c %s "$imagenet_model") bytes"
fi

echo
echo "== summary (medians; ratio = engine / reference, higher is better for the engine)"
echo "# same thr: ratio of the medians, reference at the same thread count; paired: median of the per-repetition ratios (back to back)"
echo "# best<=thr: the engine's best median / the reference's best median, each at any thread count up to thr"
echo "# (on an oversubscribed machine a reference can run slower with 2 threads than with 1); goal judged on the lower of paired and best<=thr"
echo "# cpu: reference CPU time per image / engine CPU time per image (process user+sys; at 2 threads it counts spinning)"
awk '
# median returns the median of the n values v[k, 1..n] (0 for none).
function median(v, k, n,   a, c, x, s) {
	if (!n) return 0
	for (a = 1; a <= n; a++) s[a] = v[k, a]
	for (a = 1; a <= n; a++) for (c = a + 1; c <= n; c++) if (s[c] < s[a]) { x = s[a]; s[a] = s[c]; s[c] = x }
	return (n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2)
}
function field(k,   i, n, kv) {
	for (i = 3; i <= NF; i++) { n = split($i, kv, "="); if (kv[1] == k) { gsub(/"/, "", kv[2]); return kv[2] } }
	return ""
}
# bestUpTo sets best and beste to the largest reference and engine rates
# among the n rows of key k[i] run with at most th[i] threads, and returns
# the goal ratio: beste / best, or the paired ratio pair[i] when lower.
function bestUpTo(i, n, k, th, eng, ref, pair,   j, g) {
	best = 0
	beste = 0
	for (j = 1; j <= n; j++) if (k[j] == k[i] && th[j] + 0 <= th[i] + 0) {
		if (ref[j] + 0 > best) best = ref[j] + 0
		if (eng[j] + 0 > beste) beste = eng[j] + 0
	}
	g = beste / best; if (pair[i] + 0 < g) g = pair[i] + 0
	return g
}
/^RESULT infer/ {
	k = field("build") SUBSEP field("model") SUBSEP field("batch")
	ni++; ik[ni] = k; ith[ni] = field("threads"); ieng[ni] = field("engine"); iref[ni] = field("ort")
	ibuild[ni] = field("build"); imodel[ni] = field("model"); ibatch[ni] = field("batch"); icpu[ni] = field("cpu_ratio"); ipair[ni] = field("paired")
	iscale[ni] = field("scale_paired"); icscale[ni] = field("cpu_scale"); iwrk[ni] = field("workers")
}
/^RESULT train/ {
	nt++; tk[nt] = field("build") SUBSEP field("model"); tth[nt] = field("threads"); teng[nt] = field("engine")
	tbuild[nt] = field("build"); tmodel[nt] = field("model"); tbatch[nt] = field("batch")
	tcl[nt] = field("torch_cl"); tnc[nt] = field("torch_nchw"); tcp[nt] = field("torch_cl_passive")
	tref[nt] = tcl[nt] + 0; if (tnc[nt] + 0 > tref[nt]) tref[nt] = tnc[nt] + 0; if (tcp[nt] + 0 > tref[nt]) tref[nt] = tcp[nt] + 0; tcpu[nt] = field("cpu_ratio"); tpair[nt] = field("paired")
}
/^RESULT finetune_torch/ {
	k = field("model") SUBSEP field("threads"); pn[k]++; pv[k, pn[k]] = field("ips") + 0; next
}
/^RESULT finetune/ {
	k = field("model") SUBSEP field("threads"); fn[k]++; fv[k, fn[k]] = field("ips") + 0; fr[k] = field("rss_kib"); fm[field("model")] = 1
}
/^RESULT scaling/ {
	ns++; sc[ns] = sprintf("%-16s %5s %3s %12.1f %12.1f %6.2fx %4s %12.1f %6.2fx %8.2fx", field("model"), field("batch"), field("threads"), field("one"), field("engine"), field("scale"), field("workers"), field("control"), field("control_scale"), field("engine_over_control"))
}
/^RESULT memory64/ { mem = mem sprintf("lprconv eval mobilenetv1 batch 64 peak RSS (threads %s): %.1f MiB\n", field("threads"), field("rss_kib") / 1024); next }
/^RESULT memory/ { mem = mem sprintf("lprconv eval peak RSS (threads %s): %.1f MiB\n", field("threads"), field("rss_kib") / 1024) }
/^RESULT peak/ { mem = mem sprintf("engine PeakActivationBytes (%s, batch %s): %s bytes (%.2f MiB)\n", field("model"), field("batch"), field("peak_bytes"), field("peak_mib")) }
END {
	if (ni) printf "%-8s %-16s %5s %3s %12s %12s %8s %8s %10s %8s %6s %6s %8s %4s\n", "build", "inference model", "batch", "thr", "engine img/s", "ORT img/s", "same thr", "paired", "best<=thr", "cpu", "goal", "scale", "cpuscale", "wrk"
	for (i = 1; i <= ni; i++) {
		g = bestUpTo(i, ni, ik, ith, ieng, iref, ipair)
		r = ieng[i] / iref[i]
		printf "%-8s %-16s %5s %3s %12.1f %12.1f %7.2fx %7.2fx %9.2fx %7.2fx %6s %5.2fx %7.2fx %4s\n", ibuild[i], imodel[i], ibatch[i], ith[i], ieng[i], iref[i], r, ipair[i], beste / best, icpu[i], (g >= 0.9 ? "ok" : "MISS"), iscale[i], icscale[i], iwrk[i]
	}
	if (nt) printf "\n%-8s %-16s %5s %3s %12s %10s %10s %10s %8s %8s %10s %8s %6s %6s\n", "build", "training model", "batch", "thr", "engine img/s", "torch CL", "torch NCHW", "CL passive", "same thr", "paired", "best<=thr", "cpu", "goal", "scale"
	for (i = 1; i <= nt; i++) {
		g = bestUpTo(i, nt, tk, tth, teng, tref, tpair)
		r = teng[i] / tref[i]
		one = 0
		for (j = 1; j <= nt; j++) if (tk[j] == tk[i] && tth[j] == 1) one = teng[j] + 0
		printf "%-8s %-16s %5s %3s %12.1f %10.1f %10.1f %10.1f %7.2fx %7.2fx %9.2fx %7.2fx %6s %5.2fx\n", tbuild[i], tmodel[i], tbatch[i], tth[i], teng[i], tcl[i], tnc[i], tcp[i], r, tpair[i], beste / best, tcpu[i], (g >= 1 ? "ok" : "MISS"), (one ? teng[i] / one : 0)
	}
	if (ns) printf "\n%-16s %5s %3s %12s %12s %7s %4s %12s %7s %9s\n", "scaling model", "batch", "thr", "1-thr img/s", "engine img/s", "scale", "wrk", "ctrl img/s", "scale", "eng/ctrl"
	for (i = 1; i <= ns; i++) print sc[i]
	nf = 0
	for (m in fm) {
		if (!nf++) printf "\n%-16s %3s %12s %6s %12s %12s %8s %10s %6s\n", "fine-tuning", "thr", "median img/s", "scale", "peak RSS MiB", "torch img/s", "same thr", "best/best", "goal"
		best = 0; tbest = 0
		for (th = 1; th <= 2; th++) {
			med[th] = median(fv, m SUBSEP th, fn[m SUBSEP th])
			tmed[th] = median(pv, m SUBSEP th, pn[m SUBSEP th])
			if (med[th] > best) best = med[th]
			if (tmed[th] > tbest) tbest = tmed[th]
		}
		for (th = 1; th <= 2; th++) {
			k = m SUBSEP th
			if (tbest) printf "%-16s %3d %12.1f %5.2fx %12.1f %12.1f %7.2fx %9.2fx %6s\n", m, th, med[th], (med[1] ? med[th] / med[1] : 0), fr[k] / 1024, tmed[th], (tmed[th] ? med[th] / tmed[th] : 0), best / tbest, (best / tbest >= 1.2 ? "ok" : "MISS")
			else printf "%-16s %3d %12.1f %5.2fx %12.1f\n", m, th, med[th], (med[1] ? med[th] / med[1] : 0), fr[k] / 1024
		}
	}
	if (mem != "") printf "\n%s", mem
}
' "$results"
