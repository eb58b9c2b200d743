"""The ``css-pose`` console script: one verb per app (``css-pose pretrain``, ``probe``, ``head``,
``lift``, ``predict``, ``report``, ``inspect``, ``export``, ``generate``).

The training verbs take the same Hydra-style ``key=value`` overrides as the scripts they stand for
(``python train.py``, ``python linear_probe.py``, ``python train_head.py``), which stay.
"""

from __future__ import annotations

import sys

USAGE = """usage: css-pose COMMAND [ARGS]

commands:
  pretrain  pretrain an encoder on video (CSS, plain temporal, SimCLR): python train.py
  probe     probe a pretrained encoder's features with a few labels: python linear_probe.py
  head      fine-tune a 2D pose head on a pretrained encoder: python train_head.py
  lift      train and score a 2D -> 3D lifter: python -m css_pose.lifting
  dkd       distil a fast video model (DKD) from a trained heatmap head: a model file
            that css-pose predict runs frame by frame
  generate  render the synthetic dataset: python -m css_pose.data.synthetic
  predict   run a trained 2D pose model (train_head.py's head.pt) over a video:
            keypoints JSON (COCO results), skeleton-overlay mp4, optional 3D plot
  report    static HTML report of a run folder (train.py, linear_probe.py or train_head.py)
  inspect   what css_pose finds in video folders and COCO / PoseTrack keypoint files, and
            every problem, one line each (exit 1 when something is unusable)
  export    a labelled folder (e.g. the synthetic set) as frame folders plus one COCO
            keypoints file labelling a few frames: data to try data.labels= on

css-pose COMMAND --help shows the command's options.
"""


TRAINING = {
    "pretrain": "css_pose.runner",
    "probe": "css_pose.linear_probe",
    "head": "css_pose.heads2d",
    "lift": "css_pose.lifting",
    "dkd": "css_pose.dkd",
}


def main(argv: list[str] | None = None) -> int:
    from css_pose.checkpoint import CheckpointError
    from css_pose.data.video import VideoReadError

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in TRAINING:  # their own one-line errors and exit codes (run_friendly)
        import importlib

        importlib.import_module(TRAINING[command]).run_cli(rest)
        return 0
    if command == "generate":
        from css_pose.data.synthetic.__main__ import main as run
    elif command == "predict":
        from css_pose.predict import main as run
    elif command == "report":
        from css_pose.report import main as run
    elif command == "inspect":
        from css_pose.inspection import main as run
    elif command == "export":
        from css_pose.data.export import main as run
    else:
        print(f"css-pose: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        code = run(rest)
    except (CheckpointError, VideoReadError, ValueError, FileNotFoundError) as err:
        print(f"css-pose {command}: error: {err}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def run_cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run_cli()
