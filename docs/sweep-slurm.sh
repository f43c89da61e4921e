#!/bin/bash
# A sweep split into 4 shards as a Slurm job array (see
# docs/distributed-sweeps.md). Array task i runs `lprconv sweep ... --shard
# i/4`, i = SLURM_ARRAY_TASK_ID; all tasks write into one folder on a shared
# filesystem, where each configuration is locked while it runs. Submit, then
# build the report once every task has ended:
#
#   jid=$(sbatch --parsable docs/sweep-slurm.sh)
#   sbatch --dependency=afterany:$jid --wrap "lprconv sweep --report /shared/sweeps/mobilenetv1"
#
#SBATCH --job-name=lprconv-sweep
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=02:00:00
#SBATCH --output=lprconv-sweep-%A_%a.log
set -euo pipefail

# The shard count is the array's size (--array=0-3: 4 shards).
shards=${SLURM_ARRAY_TASK_COUNT:?run this script with sbatch --array}
out=${LPRCONV_SWEEP_OUT:-/shared/sweeps/mobilenetv1}

exec lprconv sweep models/mobilenetv1.onnx --out "$out" \
	--rank-ratios 1/2,1/4,1/8,1/16 --residuals diag,identity,none \
	--eval data/test --mean 0.2860 --std 0.3530 \
	--threads "${SLURM_CPUS_PER_TASK:-4}" --no-latency \
	--shard "${SLURM_ARRAY_TASK_ID}/${shards}"
