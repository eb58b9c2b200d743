#!/bin/bash
# The raw-videos-plus-COCO-labels workflow (docs/own_data.md) measured at three label amounts:
# 600 synthetic videos exported as frame folders with COCO-17 labels of every 4th frame, CSS
# pretraining on every video (cropped around boxes.json), then a fine-tuned heatmap head on 10 %,
# 50 % and 100 % of the labelled training videos (whole videos, 600 steps each), from the CSS
# checkpoint and from random init, seeds 0 and 1. Scored on the labelled val videos; each head
# prints its floor (the mean pose of its labels). Table: docs/benchmarks.md, "Your own data".
#
#   bash benchmarks/own_data_labels.sh [WORK_DIR]      (about 20 min on 2 CPU cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-runs/own-data-labels}
mkdir -p "$work" && cd "$work"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/cache}
py=${PYTHON:-python}

[ -f data/synthetic-walk/manifest.json ] ||
    $py -m css_pose.data.synthetic --out data/synthetic-walk --videos 600 --frames 24 --size 96 --seed 7
[ -d my_project ] ||
    $py -m css_pose.cli export data/synthetic-walk my_project --label-fraction 0.1 --label-every 4 --boxes
[ -d my_project_all ] ||
    $py -m css_pose.cli export data/synthetic-walk my_project_all --label-fraction 1.0 --label-every 4
[ -f runs/pretrain/checkpoints/last.ckpt ] ||
    $py "$repo/train.py" data.root=my_project/videos data.labels=my_project/labels.json \
        data.boxes=my_project/boxes.json run_dir=runs/pretrain logger.wandb.enabled=false

for frac in 0.1 0.5 1.0; do for seed in 0 1; do for ck in pretrain none; do
    c=none; [ "$ck" = pretrain ] && c=runs/pretrain/checkpoints/last.ckpt
    out=runs/amount/$ck-$frac-$seed
    [ -f "$out/result.json" ] ||
        $py "$repo/train_head.py" ckpt=$c data.root=my_project_all/videos \
            data.labels=my_project_all/labels.json data.boxes=null label_fraction=$frac seed=$seed \
            steps=600 encoder=finetune logger.wandb.enabled=false run_dir=$out > /dev/null 2>&1
    $py - "$out/result.json" "$ck" "$frac" "$seed" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
m, f = r["metrics"], r["mean_pose"]
print(f"{sys.argv[2]:8s} fraction {sys.argv[3]:4s} seed {sys.argv[4]}  labelled videos "
      f"{len(r['labeled_videos']):3d}  frames {r['n_labeled']:4d}  PCK@0.1 {m['pck@0.1']:.3f}  "
      f"floor {f['pck@0.1']:.3f}  wrists {m['pck@0.1/wrists']:.3f}  test frames {r['n_test_frames']}")
EOF
done; done; done
