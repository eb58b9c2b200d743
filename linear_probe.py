"""Probe a pretrained encoder: `python linear_probe.py ckpt=PATH [key=value ...]` (see --help)."""

from css_pose.linear_probe import run_cli

if __name__ == "__main__":
    run_cli()
