#!/usr/bin/env bash
# Train examples/ddp/train.py under torchrun on this machine, then say what it wrote and show the run.
#
# Usage: bash scripts/launch.sh [NPROC] [key=value ...]
#   NPROC       processes (default 2): one per GPU with CUDA (NCCL), else CPU processes (gloo)
#   key=value   config overrides for the example, e.g. training.epochs=5
# Environment: RUN_DIR (default runs/ddp_<time>), EXPMATE_SKIP_SETUP=1 to skip the .venv set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

nproc=2
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    nproc=$1
    shift
fi
if [[ "${EXPMATE_SKIP_SETUP:-0}" != "1" ]]; then
    bash scripts/setup_env.sh
fi

run_dir="${RUN_DIR:-runs/ddp_$(date +%Y%m%d_%H%M%S)}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    # CPU processes on one machine talk over loopback (gloo).
    export GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}"
fi

echo "launch: torchrun --nproc-per-node=$nproc examples/ddp/train.py run_dir=$run_dir $*" >&2
.venv/bin/python -m torch.distributed.run --standalone --nproc-per-node="$nproc" \
    examples/ddp/train.py "run_dir=$run_dir" "$@"

echo
echo "Run directory: $run_dir"
echo "Files:"
for file in "$run_dir"/*; do
    [[ -f "$file" ]] || continue
    printf '  %-24s %8d lines\n' "$(basename "$file")" "$(wc -l < "$file")"
done
if [[ -f "$run_dir/best.json" ]]; then
    echo "best.json:"
    sed 's/^/  /' "$run_dir/best.json"
    echo
fi
echo "What the run did (expmate show $run_dir):"
.venv/bin/python -m expmate show "$run_dir"
