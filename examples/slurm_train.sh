#!/bin/bash
# Train with resnetlab on N nodes under SLURM: `sbatch examples/slurm_train.sh` (edit the #SBATCH lines, DATA, OUT).
# One torchrun launcher per node; torchrun starts one worker per GPU (or --nproc-per-node CPU processes) and
# rendezvouses with the other nodes over c10d at the first node. --out must be on storage every node sees (only
# rank 0 writes it); --data must be the same dataset at the same path on every node (or a path each node reads).
# A preempted or requeued job (SIGTERM, then the same script again) and a worker that dies (torchrun restarts the
# group, --max-restarts) continue from the last checkpoint: --resume-if-exists. --save-minutes bounds the work a
# hard kill loses. At the time limit SLURM does not requeue (--requeue covers preemption and node failure), so
# 2 minutes before it SLURM signals this script (USR1), which stops the run (SIGTERM: the ranks save within
# seconds) and requeues the job.
#SBATCH --job-name=resnetlab
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --output=resnetlab-%j.log
set -euo pipefail

DATA=${DATA:-/shared/datasets/imagenet}        # train/ and val/ class folders, the same on every node
OUT=${OUT:-/shared/runs/resnet50}              # on storage every node sees
# --gpus-per-node sets SLURM_GPUS_PER_NODE, --gres=gpu:N only SLURM_GPUS_ON_NODE; neither on a CPU partition
NPROC=${NPROC:-${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-1}}}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

srun --kill-on-bad-exit=1 python -m torch.distributed.run \
    --nnodes "$SLURM_NNODES" --nproc-per-node "$NPROC" \
    --rdzv-backend c10d --rdzv-endpoint "$HEAD:29500" --rdzv-id "$SLURM_JOB_ID" \
    --max-restarts 3 \
    -m resnetlab train --model resnet50 --data "$DATA" --out "$OUT" \
    --resume-if-exists --save-minutes 15 &
RUN=$!
trap 'kill -TERM "$RUN"; wait "$RUN" || true; scontrol requeue "$SLURM_JOB_ID"; exit 0' USR1
wait "$RUN"
