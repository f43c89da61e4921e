#!/bin/sh
# Times the svd package against torch.linalg.svd on the 8 pointwise matrices
# of MobileNetV1-1.0 (C = 128, 256, 512 x5, 1024; rank C/4), 5 runs each,
# interleaved, and prints the medians, the ratio Go/PyTorch and the peak RSS
# of the Go run. Usage: bench/svd/bench_svd.sh [runs] [kind]
set -eu
runs=${1:-5}
kind=${2:-none}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$here/gen_and_torch.py" gen "$tmp/m"
(cd "$root" && go build -o "$tmp/svdbench" ./bench/svd)
: >"$tmp/go.txt"
: >"$tmp/torch.txt"
: >"$tmp/gocpu.txt"
: >"$tmp/torchcpu.txt"
: >"$tmp/rss.txt"
i=0
while [ "$i" -lt "$runs" ]; do
	/usr/bin/time -v "$tmp/svdbench" -dir "$tmp/m" -kind "$kind" >"$tmp/go.out" 2>"$tmp/time.err"
	cat "$tmp/go.out"
	awk '{print $2}' "$tmp/go.out" >>"$tmp/go.txt"
	awk '{print $4}' "$tmp/go.out" >>"$tmp/gocpu.txt"
	grep "Maximum resident" "$tmp/time.err" | awk '{print $NF}' >>"$tmp/rss.txt"
	/usr/bin/python3 "$here/gen_and_torch.py" torch "$tmp/m" | tee "$tmp/torch.out"
	awk '{print $2}' "$tmp/torch.out" >>"$tmp/torch.txt"
	awk '{print $4}' "$tmp/torch.out" >>"$tmp/torchcpu.txt"
	i=$((i + 1))
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
g=$(median "$tmp/go.txt")
t=$(median "$tmp/torch.txt")
gc=$(median "$tmp/gocpu.txt")
tc=$(median "$tmp/torchcpu.txt")
rss=$(sort -g "$tmp/rss.txt" | tail -1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
echo "median wall: go ($kind) ${g}s  torch.linalg.svd ${t}s  ratio go/torch $(ratio "$g" "$t")"
echo "median CPU:  go ($kind) ${gc}s  torch.linalg.svd ${tc}s  ratio go/torch $(ratio "$gc" "$tc")"
echo "go peak RSS ${rss} KiB (whole process, /usr/bin/time -v)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
