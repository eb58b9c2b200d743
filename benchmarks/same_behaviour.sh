#!/usr/bin/env bash
# Does a refactor change behaviour? Short, seeded probe and head runs (150 steps, 10 % labels, the
# benchmark set) at two commits; their metrics and last losses must be bit-identical.
# About 4 min on 2 cores (data/synthetic-bench is generated first when missing, ~3 min).
# usage: bash benchmarks/same_behaviour.sh OLD_COMMIT [NEW_COMMIT]   (NEW defaults to HEAD)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
old="$1"; new="${2:-HEAD}"
work="$(mktemp -d)"
trap 'cd "$repo"; for t in old new; do git worktree remove -f "$work/$t" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cd "$repo"
for tag in old new; do
  commit=$([ "$tag" = old ] && echo "$old" || echo "$new")
  git worktree add -f -q --detach "$work/$tag" "$commit"
  tree="$work/$tag"
  common=(seed=0 data.num_workers=0 threads=2 logger.wandb.enabled=false label_fraction=0.1 steps=150)
  PYTHONPATH="$tree" "$py" "$tree/linear_probe.py" ckpt=none mode=supervised feature=z_v target=3d \
    batch_size=64 lr=3e-3 "${common[@]}" run_dir="$work/$tag-probe" > "$work/$tag-probe.log" 2>&1
  PYTHONPATH="$tree" "$py" "$tree/train_head.py" ckpt=none model=convnet head=heatmap stride=4 \
    fusion=true encoder=finetune encoder_lr_scale=1.0 "${common[@]}" run_dir="$work/$tag-head" \
    > "$work/$tag-head.log" 2>&1
done
"$py" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
same = True
for run in ("probe", "head"):
    a, b = (json.load(open(f"{work}/{t}-{run}/result.json")) for t in ("old", "new"))
    fa, fb = (dict(r["metrics"], last_loss=r["train_loss"][-1]) for r in (a, b))
    print(f"{run}: old {fa}\n{' ' * len(run)}  new {fb}")
    same &= fa == fb
print("bit-identical" if same else "DIFFERENT")
sys.exit(0 if same else 1)
PY
