#!/usr/bin/env bash
# LRLawCallback under data parallelism: only rank 0 fits and writes, stop decisions are broadcast.
#
#   examples/multi_gpu.sh gpu [args]   # accelerate launch on every GPU of this machine
#   examples/multi_gpu.sh cpu [args]   # 2 CPU processes on gloo via torchrun, to try it anywhere
#
# [args] go to examples/pretrain_with_callback.py, e.g. --max_steps 4000 --out_dir out/ddp.
# Note: `accelerate launch --cpu --num_processes 2` starts a single process; use torchrun on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}  # the environment's Python (launchers are run as its modules)
mode=${1:-cpu}
shift || true
case "$mode" in
  gpu)
    "$py" -m accelerate.commands.launch --multi_gpu --num_processes "${NGPU:-$(nvidia-smi -L | wc -l)}" \
      --mixed_precision no --dynamo_backend no \
      examples/pretrain_with_callback.py --device cuda "$@"
    ;;
  cpu)
    "$py" -m torch.distributed.run --nproc_per_node 2 --master_port "${PORT:-29517}" \
      examples/pretrain_with_callback.py --ddp_backend gloo --out_dir out/ddp "$@"
    ;;
  *)
    echo "usage: $0 gpu|cpu [args for pretrain_with_callback.py]" >&2
    exit 2
    ;;
esac
