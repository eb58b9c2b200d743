#!/usr/bin/env bash
# One figure from each area, rerun after a refactor (issue 15): the behaviour must not change.
# Expected (docs/benchmarks.md): head 0.900 PCK@0.1, probe 119.7 mm (0.562x), lifter 108.0 mm,
# loader crop store 5.91x / 3.83x the default loader (epochs 1 / 2; a speed ratio, so noisy).
# About 13 min on 2 cores (head 348 s with the data generation, probe 251 s, lifter 34 s, loader
# 141 s); generates data/synthetic-bench and data/synthetic_lift when missing.
# usage: bash benchmarks/reproduce_areas.sh [OUT]     (default runs/reproduce)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-runs/reproduce}"
mkdir -p "$out"
py="${PYTHON:-python}"
run() {  # the last lines of each run (its result), the whole output in $out/NAME.log
  local name=$1; shift
  echo "== $name: $*"
  /usr/bin/time -f "$name: %e s wall" "$py" "$@" > "$out/$name.log" 2>&1
  tail -n 14 "$out/$name.log"
}
run head "$here/train_head.py" ckpt=none model=convnet head=heatmap stride=4 fusion=true \
    encoder=finetune encoder_lr_scale=1.0 label_fraction=1.0 steps=1500 seed=0 \
    data.num_workers=0 threads=2 logger.wandb.enabled=false run_dir="$out/head"
run probe "$here/linear_probe.py" ckpt=none mode=supervised feature=z_v target=3d \
    label_fraction=1.0 steps=4400 batch_size=64 lr=3e-3 seed=0 data.num_workers=0 threads=2 \
    logger.wandb.enabled=false run_dir="$out/probe"
run lifter -m css_pose.lifting --data synthetic --model tcn --frames 9 --channels 128 --steps 1500
run loader "$here/benchmarks/loader.py" --store --root data/synthetic-bench --size 32 --clips 960 \
    --d-neg 12 --out "$out/loader"
