#!/bin/bash
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 WANDB_MODE=disabled
T0=$(date +%s)
timeout 120 python3 .whl/gpu_profile.py cuda 2>&1 | grep -v "^\[\|zero-area\|USDT\|check_version\|fetch_version" | tee $OUT/profile.log
echo "profile rc=$? wall=$(( $(date +%s) - T0 ))s"
T1=$(date +%s)
timeout 120 python3 src/bench.py --config-name bench_gpu_full hydra.run.dir=/tmp/gi bench.lightning=false bench.data_loader=false \
  bench.loss_protocol=null '~bench.variants.bf16' '~bench.variants.bf16_cl_compile' \
  > $OUT/bench_infer.log 2>&1
echo "bench rc=$? wall=$(( $(date +%s) - T1 ))s"
cp /tmp/gi/bench.json $OUT/bench_infer.json 2>/dev/null
grep -v "^\[" $OUT/bench_infer.log | grep -v "available\|Automatic\|zero-area\|fetch_version\|check_version" | tail -40
