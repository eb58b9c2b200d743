"""Pretrain an encoder on video: `python train.py [key=value ...]` (see `python train.py --help`)."""

from css_pose.runner import run_cli

if __name__ == "__main__":
    run_cli()
