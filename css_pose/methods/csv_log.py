"""A CSV logger for runs that stop and resume: every step's rows appear exactly once.

Lightning's CSVLogger deletes a previous ``metrics.csv`` in its folder, and keeps rows in memory
for 100 steps; a resumed run would lose the rows of the steps before the interruption, and a
killed one the rows it had not written yet. This logger appends to the run's ``metrics.csv``,
writes every row as it is logged, and rewrites the file only atomically (a temporary file, then
rename): when new columns appear, and when a run resumes from a checkpoint, where
:meth:`ResumableCSVLogger.drop_steps_from` removes the rows the resumed run will log again
(:class:`~css_pose.methods.callbacks.SaveOnInterrupt` calls it).
"""

from __future__ import annotations

import csv
import os

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from css_pose.artifacts.atomic import atomic_path


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _rewrite(self, fieldnames: list[str], keep=lambda row: True) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = [row for row in csv.DictReader(f) if keep(row)]
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self._rewrite(fieldnames)

    def drop_steps_from(self, step: int) -> None:
        self.metrics = [row for row in self.metrics if row["step"] < step]
        if os.path.isfile(self.metrics_file_path):
            self._rewrite(self.metrics_keys, keep=lambda row: int(row["step"]) < step)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives ``python train.py resume=...``, Ctrl-C and kill.

    Rows are written as they are logged (``flush_logs_every_n_steps=1``), so after any stop the
    file holds every row logged before the last checkpoint.
    """

    def __init__(self, *args, flush_logs_every_n_steps: int = 1, **kwargs):
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def drop_steps_from(self, step: int) -> None:
        """Remove the rows of logging steps >= ``step``: a run resumed from a checkpoint taken
        after ``step`` optimizer steps logs those steps again."""
        self.experiment.drop_steps_from(step)
