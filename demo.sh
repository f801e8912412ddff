#!/usr/bin/env bash
# Sets up ./.venv and runs the main job end to end on the shipped Fashion-MNIST subset:
# DεpS training of the OFA MobileNetV3 supernet at 32x32, kernel fixed at 7 as DεpS trains it
# (ofa_mbv3_k7: with elastic kernels, 80 steps leave most mixed-kernel subnets below the min
# subnet, docs/results.md#the-demo); a search for the best subnet under 8M MACs by measured
# accuracy (24 random candidates, each BN-recalibrated and measured on the run's validation
# images, against the min subnet measured on the same images); the
# test accuracy of the max, min, searched and 3 random subnets; the searched subnet's
# float32 TFLite export (accuracy before/after conversion) and its latency on this machine;
# and the run's report page, RUN_DIR/report.html (plots and tables, opens without a network).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
RUN_DIR=${RUN_DIR:-runs/demo}
.venv/bin/ofa-train --method=deps --space=ofa_mbv3_k7 --dataset=npz:data/fashion_mnist_small.npz \
  --image_size=32 --epochs=4 --steps_per_epoch=20 --batch_size=64 --learning_rate=0.05 \
  --epsilon_ramp_epochs=0.5 --model_dir="$RUN_DIR"
.venv/bin/ofa-search --model_dir="$RUN_DIR" --searcher=random --fitness=measured --num_samples=24 \
  --flops=8M --bn_calibration_images=500 --eval_images=500 --output_dir="$RUN_DIR/search"
.venv/bin/ofa-evaluate --model_dir="$RUN_DIR" --archs="max,min,$RUN_DIR/search/flops-8M.json" --num_random=3 \
  --split=test --output="$RUN_DIR/evaluation.json"
mkdir -p "$RUN_DIR/export"
.venv/bin/ofa-export --model_dir="$RUN_DIR" --arch="$RUN_DIR/search/flops-8M.json" \
  --quantize=none --bn_calibration_images=500 --eval_images=500 --output="$RUN_DIR/export/subnet_8M.tflite"
.venv/bin/ofa-benchmark-latency --models="$RUN_DIR/export/subnet_8M.tflite" --threads=1 \
  --output="$RUN_DIR/export/latency.json"
.venv/bin/ofa-report --model_dir="$RUN_DIR"
.venv/bin/python - "$RUN_DIR/search/flops-8M.json" <<'SUMMARY'
import json, sys
found = json.load(open(sys.argv[1]))
print(f"searched subnet under 8M MACs: {found['macs'] / 1e6:.2f}M MACs, {100 * found['measured_accuracy']:.1f}% "
      f"vs the min subnet's {100 * found['min_subnet_accuracy']:.1f}% on the same validation images "
      f"(best of {found['evaluations']} measured candidates)")
SUMMARY
echo "run directory: $RUN_DIR (report.html, metrics.csv, evaluation.json, search/, export/, checkpoints/," \
  "logs/ for TensorBoard)"
