"""Exactly-once logs and identical training across interruption and resume (issue 14, finding 6).

A run stopped by Ctrl-C, SIGTERM, a crash or SIGKILL and resumed must end with the CSV log and the
weights of a run that was never stopped: every step's rows once, under the same step labels, with
the same values (only ``train/frames_per_s`` measures the wall clock).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import tiny_overrides, tiny_root  # noqa: F401 - tiny_root is a fixture

from css_pose.data.datamodule import EpochRandomSampler
from css_pose.methods.css import CSSMethod
from css_pose.methods.csv_log import ResumableCSVLogger
from css_pose.runner import main

REPO = Path(__file__).resolve().parent.parent
STEPS_PER_EPOCH, EPOCHS = 3, 3
TIMING = {"train/frames_per_s"}


def overrides(root: Path, run: Path) -> list[str]:
    return tiny_overrides(
        root,
        run,
        **{
            "data.samples_per_epoch": 4 * STEPS_PER_EPOCH,
            "data.val_samples": 8,  # two validation batches
            "trainer.max_epochs": EPOCHS,
            "probe.enabled": False,
            "images.every_n_epochs": 100,
        },
    )


def log_rows(run: Path) -> list[tuple[int, dict]]:
    """metrics.csv as (step, {column: value}) in file order, without empty cells and timings."""
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return [
            (int(r["step"]), {k: v for k, v in r.items() if v and k not in TIMING | {"step"}})
            for r in csv.DictReader(f)
        ]


def assert_same_weights(a: Path, b: Path) -> None:
    sa = torch.load(a / "checkpoints" / "last.ckpt", weights_only=True)
    sb = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)
    assert sa["global_step"] == sb["global_step"] == STEPS_PER_EPOCH * EPOCHS
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    different = [k for k, v in sa["state_dict"].items() if not torch.equal(v, sb["state_dict"][k])]
    assert not different, different


def test_sampler_resumed_inside_an_epoch_skips_its_trained_samples():
    data = range(20)
    full = list(EpochRandomSampler(data, seed=1, epoch=3, rank=1, world_size=2))
    resumed = EpochRandomSampler(data, seed=1, epoch=3, rank=1, world_size=2, start=4)
    resumed.set_epoch(3)  # Lightning sets the resumed epoch again before its pass
    assert len(resumed) == len(full) == 10 and list(resumed) == full[4:]
    resumed.set_epoch(4)
    assert list(resumed) == list(EpochRandomSampler(data, seed=1, epoch=4, rank=1, world_size=2))


def test_csv_rows_past_a_checkpoint_are_dropped(tmp_path):
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    for step in range(4):
        logger.log_metrics({"train/loss": float(step)}, step=step)
    logger.log_metrics({"val/loss": 9.0}, step=3)
    assert [s for s, _ in log_rows(tmp_path)] == [0, 1, 2, 3, 3]  # written as logged
    again = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    again.drop_steps_from(2)
    again.log_metrics({"train/loss": 2.5, "train/lr": 0.1}, step=2)
    assert log_rows(tmp_path) == [
        (0, {"train/loss": "0.0"}),
        (1, {"train/loss": "1.0"}),
        (2, {"train/loss": "2.5", "train/lr": "0.1"}),
    ]


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> Path:  # noqa: F811
    """The run never stopped."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(overrides(tiny_root, run))["global_step"] == STEPS_PER_EPOCH * EPOCHS
    return run


@pytest.fixture
def keep_sigint():
    """Lightning ignores SIGINT after a KeyboardInterrupt; give pytest its Ctrl-C back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def interrupt_at(how: str, phase: str, step: int):
    """CSSMethod.training_loss, interrupted once ``how`` in the middle of training step ``step``
    (``phase="train"``) or of the second batch of the validation after it (``"val"``)."""
    original = CSSMethod.training_loss
    calls = []

    def training_loss(self, batch):
        now = "train" if self.training else "val"
        if (now, self.global_step) == (phase, step) and not self.trainer.sanity_checking:
            calls.append(now)
            if len(calls) == (1 if phase == "train" else 2):
                if how == "ctrl_c":  # as from the terminal
                    os.kill(os.getpid(), signal.SIGINT)
                elif how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                else:  # a KeyboardInterrupt (second Ctrl-C) or crash inside the step
                    raise KeyboardInterrupt
        return original(self, batch)

    return training_loss


# (how, phase, step, global_step of interrupted.ckpt); epochs are steps 0-2, 3-5, 6-8. Ctrl-C and
# SIGTERM let the step in flight finish; Ctrl-C in an epoch's last step also its validation and
# epoch-end checkpoint. An exception leaves the step, or the whole validation, to the resumed run.
INTERRUPTS = [
    ("ctrl_c", "train", 4, 5),
    ("ctrl_c", "train", 5, 6),
    ("sigterm", "train", 4, 5),
    ("raise", "train", 4, 4),
    ("raise", "val", 6, 6),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how, phase, step, saved_step", INTERRUPTS)
def test_resume_from_interrupted_logs_each_step_once(
    tiny_root,  # noqa: F811
    reference,
    tmp_path,
    monkeypatch,
    keep_sigint,
    how,
    phase,
    step,
    saved_step,
):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(CSSMethod, "training_loss", interrupt_at(how, phase, step))
        with pytest.raises(SystemExit):
            main(overrides(tiny_root, run))
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    saved_at = torch.load(interrupted, weights_only=True)["global_step"]

    main([f"resume={interrupted}"])
    got, want = log_rows(run), log_rows(reference)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert got == want
    assert_same_weights(reference, run)
    assert saved_at == saved_step


KILLER = """
import os, signal, sys
from css_pose.data.datamodule import EpochRandomSampler
from css_pose.methods.csv_log import ResumableCSVLogger
from css_pose.methods.css import CSSMethod
from css_pose.runner import main

phase, step = sys.argv[1].split(":")
original = CSSMethod.training_loss

def training_loss(self, batch):
    now = "train" if self.training else "val"
    if (now, self.global_step) == (phase, int(step)) and not self.trainer.sanity_checking:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batch)

CSSMethod.training_loss = training_loss
main(sys.argv[2:])
"""


@pytest.mark.timeout(600)
def test_sigkill_three_times_then_resume_matches_uninterrupted(
    tiny_root,  # noqa: F811
    reference,
    tmp_path,
):
    """SIGKILL at three points after the first epoch-end checkpoint, resuming from last.ckpt each
    time: mid-step 4 (last.ckpt at step 3), in the validation after step 6 (still 3), mid-step 7
    (last.ckpt at 6). Each kill leaves rows of steps the next process trains again."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "CSS_POSE_RUN_DIR")}
    for kill, argv in [
        ("train:4", overrides(tiny_root, run)),
        ("val:6", [f"resume={last}"]),
        ("train:7", [f"resume={last}"]),
    ]:
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, kill, *argv],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        steps = [s for s, r in log_rows(run) if "train/loss" in r]
        assert steps == list(range(max(steps) + 1)), steps  # nothing missing before the kill
    assert torch.load(last, weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH

    main([f"resume={last}"])
    got, want = log_rows(run), log_rows(reference)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert got == want
    assert_same_weights(reference, run)
