#!/usr/bin/env bash
# The GPU check, prepared for a session that is lent a GPU (the device tool): about 7 minutes.
# The device image has torch, torchvision, opencv, scikit-image, scikit-learn, timm, tensorboard and tqdm, which
# is all r2o_pretrain needs, so it runs from the checkout without setup:
#   bash benchmarks/gpu_check.sh          (summary files under $OUT, or /tmp/gpu_check; runs under /tmp/gpu_runs)
# Each step runs even when an earlier one failed ("step N FAILED" in the log), so one call shows everything.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_check}"
runs=/tmp/gpu_runs
mkdir -p "$out" "$runs"
step() { echo; echo "=== step $1 ($(date +%T), ${SECONDS}s in)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision, cv2; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cv2', cv2.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
# 64 val scenes with fg masks: the online evaluation (on by default in the demo) then measures its GPU cost
python3 tools/make_demo_data.py /tmp/r2o_demo --train 256 --val 64 --fg 64 | tail -n 1
common=(data.demo=true data.demo_dir=/tmp/r2o_demo data.superpixel_cache=/tmp/r2o_sp data.num_workers=8
        model.depth=50 data.view_size=224 data.raw_size=224 train.batch_size=64 train.epochs=2 train.log_every=1
        train.regions_png=false eval.size=224)
step "0: the SLIC cache, filled on all cores first (what a user does before a long run)"
python3 tools/cache_superpixels.py "${common[@]}" --workers "$(nproc)" 2>&1 | tail -n 1 || echo "step 0 FAILED"
step "1: bf16 autocast + channels_last, killed after step 5 and resumed (AMP path, exact resume on GPU)"
python3 tools/pretrain.py "${common[@]}" train.amp=bf16 train.channels_last=true train.checkpoint_every=2 \
  train.output_dir="$runs/bf16" debug.kill_at_step=5 >"$runs/bf16_first.log" 2>&1
echo "first run exit $? (137 = killed at step 5, as asked)"
python3 tools/pretrain.py "${common[@]}" train.amp=bf16 train.channels_last=true train.checkpoint_every=2 \
  train.output_dir="$runs/bf16" --resume auto 2>&1 | tail -n 3 || echo "step 1 FAILED"
cp "$runs/bf16/metrics.jsonl" "$out/bf16_metrics.jsonl" 2>/dev/null
step "2: fp16 with the GradScaler, photometric augmentation on the GPU (data.augment_on=device)"
python3 tools/pretrain.py "${common[@]}" train.amp=fp16 data.augment_on=device train.output_dir="$runs/fp16" \
  train.max_steps=4 eval.every_epochs=0 2>&1 | tail -n 2 || echo "step 2 FAILED"
cp "$runs/fp16/metrics.jsonl" "$out/fp16_metrics.jsonl" 2>/dev/null
step "3: NCCL + SyncBN through torchrun (one process per GPU; with one GPU this checks the wiring, not scaling)"
torchrun --standalone --nproc-per-node "$(nvidia-smi -L | wc -l)" tools/pretrain.py "${common[@]}" \
  train.output_dir="$runs/ddp" train.max_steps=4 2>&1 | tail -n 3 || echo "step 3 FAILED"
step "4: R2O vs BYOL step, R50 224² bf16 + channels_last, batch 32 / 256, K 16 / 128, k-means graphs off / auto"
timeout 300 python3 benchmarks/gpu_throughput.py --profile 2>&1 | tee "$out/throughput.md" || echo "step 4 FAILED"
step "5: the loader's GPU side: batched photometric augmentation + normalisation, img/s"
python3 benchmarks/gpu_augment.py 2>&1 | tee "$out/augment.txt" || echo "step 5 FAILED"
step "6: loader img/s per core on this machine's idle cores (1 worker), and with 8 / 15 workers"
timeout 150 python3 benchmarks/loader.py --images 64 --batches 4 --repeats 1 --no-stages --scaling 8 15 2>&1 \
  | tee "$out/loader.md" || echo "step 6 FAILED or timed out"
echo; echo "=== done in ${SECONDS}s"
