"""Lightning callbacks for pretraining: online probe, media, interruption safety, atomic checkpoints."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from css_pose.checkpoint import read_torch_file, save_torch_file
from css_pose.metrics import body_frame, mpjpe, p_mpjpe, pck_tight, root_relative
from css_pose.probe import fit_ridge_cv
from css_pose.probe.batches import collect_frames
from css_pose.viz import contact_sheet, draw_skeleton, embedding_figure, save_png

# The online probe fits on half of the labelled validation videos and scores on the other half.
MIN_PROBE_VIDEOS = 4


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically with a content hash, read back safely and verified.

    Saving goes through :func:`~css_pose.checkpoint.save_torch_file` (temporary file, then rename:
    a crash never leaves half a file); loading (``resume=``) through
    :func:`~css_pose.checkpoint.read_torch_file` (``weights_only=True``, hash checked).
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save_torch_file(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return read_torch_file(path)


class SaveOnInterrupt(pl.Callback):
    """Interruption safety: stop cleanly, save ``checkpoints/interrupted.ckpt``, resume exactly.

    - The first Ctrl-C during fit lets the step in flight finish (and be logged), then stops before
      the next one; a second Ctrl-C stops at once. SIGTERM stops likewise (Lightning's handler).
    - On that stop or any crash, saves ``interrupted.ckpt`` at the last finished optimizer step.
    - Any checkpoint taken inside a training batch (a crash, the non-finite-loss guard) records
      that batch as not begun, so a resumed run trains it again under the same logging step.
    - On resume, loggers with ``drop_steps_from``
      (:class:`~css_pose.methods.csv_log.ResumableCSVLogger`) drop their rows of steps >= the
      checkpoint's ``global_step``: the resumed run logs those steps again (after a kill, the
      rows past the last epoch-end checkpoint).
    """

    def __init__(self, dirpath: str | Path):
        self.path = Path(dirpath) / "interrupted.ckpt"
        self._stop_requested = False
        self._previous_sigint = None
        self._saving_mid_validation = False

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        # Installed after Lightning's own signal handlers, so that its teardown restores the
        # handler from before fit on every path, a crash included.
        self._stop_requested = False
        try:
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C keeps its default behaviour
            self._previous_sigint = None

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        print("\n[css_pose] Ctrl-C: stopping after this step (Ctrl-C again stops now)", flush=True)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        # A resumed run's sanity check has trained nothing since the checkpoint it resumed.
        if trainer.global_step == 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._saving_mid_validation = trainer.validating
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._saving_mid_validation = False
        print(
            f"\n[css_pose] {type(exception).__name__} at step {trainer.global_step}: saved "
            f"{self.path}\n[css_pose] continue with: python train.py resume={self.path}"
        )

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        # Inside a batch, Lightning's progress counts it as begun (ready/started) but not processed
        # (no optimizer step yet). Resumed from such a state, Lightning advances its logging step
        # by one (it expects mid-batch states only from on_train_batch_end, after the optimizer
        # step), so every later row would be labelled one step late. As never begun, the batch is
        # trained again at its own step; the datamodule skips the batches already processed.
        fit = checkpoint.get("loops", {}).get("fit_loop")
        if fit is None:
            return
        batches, epochs = fit["epoch_loop.batch_progress"], fit["epoch_progress"]
        for count in (batches["total"], batches["current"]):
            if count["ready"] > count["processed"]:
                count["ready"] = count["started"] = count["processed"]
                batches["is_last_batch"] = False
        if batches["current"]["processed"] == 0:
            # No batch of this epoch trained: the epoch is recorded as not begun either (Lightning
            # would take its batch 0 for the end of the epoch before, and not train it).
            for count in (epochs["total"], epochs["current"]):
                count["ready"] = count["started"] = count["processed"]
        if self._saving_mid_validation:
            # Lightning would skip an interrupted validation, or go on from the batch in flight
            # without the metrics of those before it. Recorded as stopped in its first batch, it
            # runs again in full, and logs its rows once.
            val = fit["epoch_loop.val_loop.batch_progress"]
            val["current"] = dict.fromkeys(val["current"], 0)
            val["total"] = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
            val["is_last_batch"] = False

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        # Our methods log once per optimizer step, so the resumed run's first logging step is
        # the checkpoint's global_step (validation rows of the step before it stay).
        for logger in trainer.loggers:
            if hasattr(logger, "drop_steps_from"):
                logger.drop_steps_from(checkpoint["global_step"])


def _collect(pl_module, loader) -> dict[str, torch.Tensor]:
    """Run ``pl_module.features`` over a labeled frame loader in eval mode
    (:func:`~css_pose.probe.batches.collect_frames`); returns concatenated CPU tensors."""
    was_training = pl_module.training
    pl_module.eval()
    data = collect_frames(pl_module, loader, pl_module.device)
    pl_module.train(was_training)
    data.pop("has_labels")
    return data


def score_probe(
    pred: dict[str, torch.Tensor], gt: dict[str, torch.Tensor], pck_alpha: float
) -> dict[str, float]:
    """Scores of one probe's predictions (definitions: docs/metrics.md).

    Args:
        pred, gt: ``kp2d`` (B, J, 2) crop px, ``kp3d`` (B, J, 3) root-relative camera coordinates
            (mm), ``body3d`` (B, J, 3) body-frame pose (mm); ``gt`` also ``visibility`` (B, J).
        pck_alpha: PCK threshold as a fraction of the longer side of the tight visible GT box.
    Returns:
        ``pck`` (:func:`~css_pose.metrics.pck_tight`, pooled over visible joints), ``mpjpe`` and
        ``pmpjpe`` of the camera-frame 3D prediction, ``body_mpjpe`` of the body-frame prediction.
    """
    return {
        "pck": float(pck_tight(pred["kp2d"], gt["kp2d"], gt["visibility"].bool(), pck_alpha)),
        "mpjpe": float(mpjpe(pred["kp3d"], gt["kp3d"])),
        "body_mpjpe": float(mpjpe(pred["body3d"], gt["body3d"])),
        "pmpjpe": float(p_mpjpe(pred["kp3d"], gt["kp3d"])),
    }


def ridge_probe(
    data: dict[str, torch.Tensor], alphas: list[float], pck_alpha: float
) -> dict[str, float]:
    """Fit ridge regressors from each feature to pose on half of the videos, score the rest.

    Videos are split by sorted id: even positions fit, odd positions are held out. One ridge per
    target and feature, each with its own cross-validated penalty: 2D keypoints (crop px),
    root-relative camera-frame 3D (mm) and body-frame 3D (:func:`~css_pose.metrics.body_frame`,
    mm). The ``mean`` row is the no-image baseline: the mean fitting target of each kind,
    predicted for every held-out frame and scored the same way (:func:`score_probe`).

    Returns:
        ``{"<feature>_pck", "<feature>_mpjpe", "<feature>_body_mpjpe", "<feature>_pmpjpe"}`` for
        every feature and for ``mean``.
    """
    vids = data["video_idx"]
    uniq = torch.unique(vids)
    if len(uniq) < MIN_PROBE_VIDEOS:
        raise ValueError(
            f"the online probe needs labeled frames from at least {MIN_PROBE_VIDEOS} validation "
            f"videos, got {len(uniq)}; "
            "add videos or raise data.val_fraction"
        )
    held = torch.isin(vids, uniq[1::2])
    n_folds = min(5, len(uniq[0::2]))
    kp3d = root_relative(data["keypoints_3d"])
    targets = {"kp2d": data["keypoints_2d"], "kp3d": kp3d, "body3d": body_frame(kp3d)}
    gt = {k: v[held] for k, v in targets.items()}
    gt["visibility"] = data["visibility"][held]
    n_held = int(held.sum())
    mean = {k: v[~held].mean(0, keepdim=True).expand(n_held, -1, -1) for k, v in targets.items()}
    rows = {"mean": score_probe(mean, gt, pck_alpha)}
    for key, x in data.items():
        if not key.startswith("feat/"):
            continue
        pred = {}
        for kind, y in targets.items():
            probe, _ = fit_ridge_cv(
                x[~held], y[~held].flatten(1), alphas=alphas, n_folds=n_folds, groups=vids[~held]
            )
            pred[kind] = probe.predict(x[held]).float().reshape(gt[kind].shape)
        rows[key.removeprefix("feat/")] = score_probe(pred, gt, pck_alpha)
    return {f"{name}_{metric}": v for name, row in rows.items() for metric, v in row.items()}


class OnlineProbe(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, ridge-probe the frozen features (see
    :func:`ridge_probe`) and log ``probe/<feature>_pck`` (PCK@``pck_alpha``, tight visible box),
    ``probe/<feature>_mpjpe`` (camera frame), ``probe/<feature>_body_mpjpe`` (body frame) and
    ``probe/<feature>_pmpjpe``, each beside the no-image baseline ``probe/mean_<metric>``.

    ``probe/mpjpe`` repeats the MPJPE of the method's pose feature (z_v, else backbone): it is the
    checkpoint monitor. ``z_v`` should predict pose far better than ``z_i``: that is the
    disentanglement check. With ``at_start`` the encoder is probed once before training (the
    random-init baseline, logged at step 0 as ``probe/init_<feature>_<metric>`` and kept in
    ``self.initial``). With ``embedding_dir`` each probe also saves ``embedding_epoch<E>.png`` (and
    W&B ``media/embedding``): PCA of z_v coloured by pose cluster beside z_i coloured by video
    (:func:`css_pose.viz.embedding_figure`).
    """

    def __init__(
        self,
        loader_fn: Callable[[], object],
        alphas: list[float],
        pck_alpha: float = 0.1,
        every_n_epochs: int = 1,
        at_start: bool = True,
        embedding_dir: str | Path | None = None,
    ):
        self.loader_fn = loader_fn
        self.embedding_dir = Path(embedding_dir) if embedding_dir is not None else None
        self._data: dict[str, torch.Tensor] | None = None
        self.alphas = list(alphas)
        self.pck_alpha = pck_alpha
        self.every_n_epochs = every_n_epochs
        self.at_start = at_start
        self.initial: dict[str, float] | None = None
        self.latest: dict[str, float] | None = None

    def measure(self, pl_module) -> dict[str, float]:
        self._data = _collect(pl_module, self.loader_fn())
        res = ridge_probe(self._data, self.alphas, self.pck_alpha)
        res["mpjpe"] = res["z_v_mpjpe"] if "z_v_mpjpe" in res else res["backbone_mpjpe"]
        return res

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.at_start or trainer.global_step > 0:
            return
        self.initial = self.measure(pl_module)
        if self.embedding_dir is not None and trainer.is_global_zero:
            self.save_embedding(trainer, 0)
        for logger in trainer.loggers:
            logger.log_metrics({f"probe/init_{k}": v for k, v in self.initial.items()}, step=0)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.latest = self.measure(pl_module)
        for k, v in self.latest.items():
            pl_module.log(f"probe/{k}", v)
        if self.embedding_dir is not None and trainer.is_global_zero:
            self.save_embedding(trainer, trainer.current_epoch + 1)

    def save_embedding(self, trainer, epoch: int) -> Path:
        d = self._data
        z_v = d.get("feat/z_v", d["feat/backbone"])
        z_i = d.get("feat/z_i")
        image = embedding_figure(
            z_v.numpy(),
            None if z_i is None else z_i.numpy(),
            root_relative(d["keypoints_3d"]).numpy(),
            d["video_idx"].numpy(),
            title=f"epoch {epoch}: held-out validation frames",
        )
        path = save_png(self.embedding_dir / f"embedding_epoch{epoch:03d}.png", image)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="media/embedding", images=[image], step=trainer.global_step)
        return path


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0, 1] -> (..., H, W, 3) uint8."""
    arr = images.detach().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return np.moveaxis(arr, -3, -1)


class MediaLogger(pl.Callback):
    """Every ``every_n_epochs`` epochs save (and send to W&B) pictures of what the model does:

    - ``reconstruction``: inputs (top row) above their reconstructions (CSS with a decoder);
    - ``swap``: a grid whose cell (r, c) decodes the pose of row r's video with the appearance of
      column c's video; the first row and column show the source frames.

    PNGs go to ``<run>/images/<kind>_epoch<E>.png``.
    """

    def __init__(
        self, loader_fn, out_dir: str | Path, every_n_epochs: int = 2, num_samples: int = 6
    ):
        self.loader_fn = loader_fn
        self.out_dir = Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.saved: list[Path] = []

    def _frames(self) -> torch.Tensor:
        """One frame from each of ``num_samples`` different videos of ``loader_fn()``."""
        picked, seen = [], set()
        for batch in self.loader_fn():
            for frame, vid in zip(batch["frames"], batch["video_idx"].tolist()):
                if vid not in seen:
                    seen.add(vid)
                    picked.append(frame)
            if len(picked) >= self.num_samples:
                break
        return torch.stack(picked[: self.num_samples])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        is_last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if epoch % self.every_n_epochs and not is_last:
            return
        if getattr(pl_module, "decoder", None) is None:
            return
        frames = self._frames().to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            z_v, z_i, _ = pl_module.heads(pl_module.encoder(frames))
            recon = pl_module.decoder(z_v, z_i)
            swap = pl_module.decode_swap(frames, frames) if pl_module.split else None
        pl_module.train(was_training)
        pictures = {
            "reconstruction": contact_sheet(
                list(_to_uint8(torch.cat([frames, recon]))), ncols=len(frames)
            )
        }
        if swap is not None:
            src = _to_uint8(frames)
            blank = np.zeros_like(src[0])
            cells = [blank, *src]
            for r in range(len(frames)):
                cells += [src[r], *_to_uint8(swap[r])]
            pictures["swap"] = contact_sheet(cells, ncols=len(frames) + 1)
        for kind, image in pictures.items():
            path = self.out_dir / f"{kind}_epoch{epoch:03d}.png"
            save_png(path, image)
            self.saved.append(path)
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=f"media/{kind}", images=[image], step=trainer.global_step)


def skeleton_sheet(batch: dict, ncols: int = 6) -> np.ndarray:
    """Contact sheet of the first frame of each sample with its ground-truth skeleton drawn on.

    Args:
        batch: a collated dataset batch (``frames`` (B, N, 3, H, W), ``keypoints_2d`` (B, N, J, 2)
            crop px, ``visibility`` (B, N, J), ``has_labels`` (B,)).
    """
    images = []
    for i, img in enumerate(_to_uint8(batch["frames"][:, 0])):
        if bool(batch["has_labels"][i]):
            img = draw_skeleton(
                img, batch["keypoints_2d"][i, 0].numpy(), batch["visibility"][i, 0].numpy()
            )
        images.append(img)
    return contact_sheet(images, ncols=ncols)
