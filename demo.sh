#!/usr/bin/env bash
# Sets up ./.venv and runs the main job end to end on the shipped Fashion-MNIST subset:
# DεpS training of the OFA MobileNetV3 supernet at 32x32, accuracy of its max, min and 3
# random subnets (each BN-recalibrated), TOFA's zero-cost search for the best subnet under
# 8M MACs, and its export to TFLite (float32, with accuracy before/after conversion).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
RUN_DIR=${RUN_DIR:-runs/demo}
.venv/bin/ofa-train --method=deps --space=ofa_mbv3 --dataset=npz:data/fashion_mnist_small.npz \
  --image_size=32 --epochs=4 --steps_per_epoch=20 --batch_size=64 --learning_rate=0.05 \
  --epsilon_ramp_epochs=0.5 --model_dir="$RUN_DIR"
.venv/bin/ofa-evaluate --model_dir="$RUN_DIR" --archs=max,min --num_random=3 --split=test \
  --output="$RUN_DIR/evaluation.json"
.venv/bin/ofa-search --model_dir="$RUN_DIR" --searcher=zero_cost --flops=8M \
  --bn_calibration_images=500 --eval_images=500 --output_dir="$RUN_DIR/search"
mkdir -p "$RUN_DIR/export"
.venv/bin/ofa-export --model_dir="$RUN_DIR" --arch="$RUN_DIR/search/flops-8M.json" \
  --quantize=none --bn_calibration_images=500 --eval_images=500 --output="$RUN_DIR/export/subnet_8M.tflite"
echo "run directory: $RUN_DIR (metrics.csv, evaluation.json, search/, export/, checkpoints/, logs/ for TensorBoard)"
