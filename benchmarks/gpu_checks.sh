#!/usr/bin/env bash
# Every GPU check in one go, for a machine with at least one CUDA device:
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        (PYTHON=... to pick the interpreter)
# Runs benchmarks/gpu_sync_check.py at 1 and 2 ranks (reduced, batched, unreduced; one process
# with background flushes and with forced flushes only), each expecting zero synchronizing CUDA
# calls while logging and every value exact, then the tests that need CUDA and the GPU example of
# docs/metrics.md. Reports land in OUT_DIR (default /tmp/expmate-gpu-checks); a summary line per
# case; exit status 1 if any failed.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-/tmp/expmate-gpu-checks}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo}
failed=0
port=29640

check() {  # check NAME NPROC ARGS...
    local name=$1 nproc=$2
    shift 2
    local log="$OUT/$name.log"
    if [ "$nproc" = 1 ]; then
        timeout 300 "$PYTHON" benchmarks/gpu_sync_check.py --out "$OUT" --expect-zero "$@" >"$log" 2>&1
    else
        port=$((port + 1))
        timeout 300 "$PYTHON" -m torch.distributed.run --nproc-per-node="$nproc" \
            --master-addr=127.0.0.1 --master-port=$port \
            benchmarks/gpu_sync_check.py --out "$OUT" --expect-zero "$@" >"$log" 2>&1
    fi
    local rc=$?
    [ $rc = 0 ] || failed=1
    echo "$name: exit $rc ($log)"
}

"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPUs')" \
    || exit 2

check w1_background 1 --flush-interval 0.02
check w1_forced_only 1 --flush-interval 1000
check w2_mean 2
check w2_mean_k10 2 --sync-every 10
check w2_unreduced 2 --reduce none --flush-interval 0.02

"$PYTHON" -m pytest -q -p no:randomly -k "cuda" tests/test_device_copy.py \
    tests/test_logger_device_values.py tests/torch/test_reduce.py >"$OUT/pytest_cuda.log" 2>&1
rc=$?
[ $rc = 0 ] || failed=1
echo "pytest (CUDA tests): exit $rc ($OUT/pytest_cuda.log)"

# The GPU example of docs/metrics.md, run as printed there (its output goes under the example).
"$PYTHON" - >"$OUT/docs_metrics_example.py" <<'PY'
import pathlib, re
text = pathlib.Path("docs/metrics.md").read_text()
section = text[text.index("### Tensors on a GPU"):]
print(re.search(r"```python\n(.*?)```", section, re.S).group(1), end="")
PY
OUT="$OUT" timeout 120 "$PYTHON" "$OUT/docs_metrics_example.py" >"$OUT/docs_metrics_example.txt" 2>&1
rc=$?
[ $rc = 0 ] || failed=1
echo "docs/metrics.md GPU example: exit $rc ($OUT/docs_metrics_example.txt)"

"$PYTHON" - "$OUT" <<'EOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("report_*.json")):
    r = json.loads(path.read_text())
    print(
        f"{path.name}: syncs while logging {r['sync_calls_while_logging']} "
        f"(warm-up {r['sync_calls_during_warmup']}, final flush {r['sync_calls_at_final_flush']}), "
        f"store flushes {r['store_flushes_while_logging']}, rows {r['rows_checked']} "
        f"wrong {r['rows_wrong']} in order {r['rows_in_step_order']}, "
        f"us/step cuda {r['median_us_per_step_cuda_tensors']:.0f} "
        f"floats {r['median_us_per_step_floats']:.0f} item {r['median_us_per_step_item_each']:.0f}"
    )
EOF
exit $failed
