"""Fine-tune a 2D pose head: `python train_head.py ckpt=PATH [key=value ...]` (see --help)."""

from css_pose.heads2d import run_cli

if __name__ == "__main__":
    run_cli()
