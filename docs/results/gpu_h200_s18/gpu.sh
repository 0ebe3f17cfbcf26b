#!/bin/bash
# Device check for issue 10 (not tracked: the wheel install is this workplace's). Run from the repo root.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 WANDB_MODE=disabled
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv; nproc; free -g | head -2; df -h /dev/shm;
  python3 -c "import torch,torchvision,pytorch_lightning as pl,torchmetrics,hydra,albumentations as A;print('torch',torch.__version__,'tv',torchvision.__version__,'pl',pl.__version__,'tm',torchmetrics.__version__,'hydra',hydra.__version__,'albu',A.__version__,torch.cuda.get_device_name())"; } 2>&1 | tee $OUT/env.txt
T0=$(date +%s)
timeout ${BENCH_LIMIT:-330} python3 src/bench.py --config-name bench_gpu_full hydra.run.dir=/tmp/gb 2>&1 | tee $OUT/bench_gpu_full.log
echo "bench rc=$? wall=$(( $(date +%s) - T0 ))s" | tee -a $OUT/bench_gpu_full.log
cp /tmp/gb/bench.json $OUT/ 2>/dev/null
# real training on the GPU: multi-scale (a new size every 10 batches) with compile + channels_last + bf16
T1=$(date +%s)
TORCH_LOGS=recompiles timeout ${TRAIN_LIMIT:-150} python3 src/train.py trainer=gpu model=yolov2 model.fast.compile=true \
  model.fast.channels_last=true data.batch_size=16 data.num_workers=8 trainer.max_epochs=4 logger=csv \
  callbacks.prediction_images.num_images=0 hydra.run.dir=/tmp/gt > $OUT/train_gpu.log 2>&1
echo "train rc=$? wall=$(( $(date +%s) - T1 ))s" | tee -a $OUT/train_gpu.log
grep -c "Recompiling\|recompil" $OUT/train_gpu.log; grep -v "^\[.*yolo9000.data\]" $OUT/train_gpu.log | grep -i "epoch \|recompil\|error\|Traceback" | tail -25
CK=$(ls -t /tmp/gt/checkpoints/*.ckpt 2>/dev/null | head -1)
if [ -n "$CK" ]; then
  T2=$(date +%s)
  timeout ${EVAL_LIMIT:-90} python3 src/eval.py ckpt_path=$CK trainer=gpu sizes=[192,256,320,416] hydra.run.dir=/tmp/ge > $OUT/tradeoff_gpu.log 2>&1
  echo "tradeoff rc=$? wall=$(( $(date +%s) - T2 ))s" | tee -a $OUT/tradeoff_gpu.log
  cp /tmp/ge/tradeoff.md /tmp/ge/tradeoff.csv /tmp/ge/tradeoff.png $OUT/ 2>/dev/null; cat /tmp/ge/tradeoff.md; tail -5 $OUT/tradeoff_gpu.log
fi
grep -v "^\[" $OUT/bench_gpu_full.log | grep -v "available\|Trainer.fit\|Automatic" | tail -70
