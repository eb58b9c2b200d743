"""The Lightning side of the data: :class:`LightningData` hands a
:class:`~css_pose.data.datamodule.VideoDataModule` to ``Trainer.fit``, so that the data package
stays free of Lightning."""

from __future__ import annotations

import pytorch_lightning as pl

from css_pose.data.datamodule import VideoDataModule


class LightningData(pl.LightningDataModule):
    """A LightningDataModule that runs the hooks of ``data``; any other attribute (e.g.
    ``probe_dataloader``, ``label_index``) is ``data``'s, so callbacks reading
    ``trainer.datamodule`` see the VideoDataModule's."""

    def __init__(self, data: VideoDataModule):
        super().__init__()
        self.data = data

    def prepare_data(self) -> None:
        self.data.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.data.setup(stage)

    def train_dataloader(self):
        # The trainer tells where a resumed run starts (epoch, batches already trained).
        self.data.trainer = self.trainer
        return self.data.train_dataloader()

    def val_dataloader(self):
        return self.data.val_dataloader()

    def __getattr__(self, name: str):
        data = self.__dict__.get("data")
        if data is None:  # during __init__
            raise AttributeError(name)
        return getattr(data, name)
