#!/bin/bash
# One GPU call of the offline suite (docs/results.md): resumes .suite/runs, then packs the small
# per-run files (result/failure/config/subnet json, metrics.csv, worker logs) into
# $OUT/results.tgz. Needs .suite/assets (from `offline_suite pack`), .suite/runs (earlier
# results, may be empty) and .suite/whl (ml_collections + tensorboardX wheels when the
# machine lacks them). Environment knobs: SUITE_TIMEOUT, SUITE_DEADLINE, SUITE_WORKERS,
# SUITE_XLA_FLAGS.
set -u
OUT=${OUT:-.suite/out}
mkdir -p "$OUT" .suite/runs
if compgen -G ".suite/whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .suite/whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# Triton GEMM autotuning of float32 ('highest') fusions takes minutes per fusion: use cuBLAS.
export XLA_FLAGS="${SUITE_XLA_FLAGS:---xla_gpu_enable_triton_gemm=false}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/device.txt"
timeout "${SUITE_TIMEOUT:-550}" python3 -m experiments.offline_suite run --workers "${SUITE_WORKERS:-10}" \
    --runs .suite/runs --deadline-s "${SUITE_DEADLINE:-400}" --compile-cache /tmp/jaxcache \
    > "$OUT/launch.log" 2>&1
echo "rc=$?" >> "$OUT/launch.log"
(cd .suite/runs && find . \( -name result.json -o -name failure.json -o -name config.json \
    -o -name subnet.json -o -name metrics.csv -o -name '*.log' \) -not -path './claims/*' \
    | tar -czf - -T -) > "$OUT/results.tgz"
