"""Video data: decoding backends, folder index, clip sampling, datasets and the synthetic generator.

Typical use::

    from css_pose.data import VideoDataModule
    dm = VideoDataModule("data/synthetic", mode="contrastive", size=64)
"""

from css_pose.data.datamodule import VideoDataModule
from css_pose.data.dataset import VideoClipDataset
from css_pose.data.index import VideoIndex, VideoIndexError, index_videos
from css_pose.data.video import VideoReadError, open_video

__all__ = [
    "VideoClipDataset",
    "VideoDataModule",
    "VideoIndex",
    "VideoIndexError",
    "VideoReadError",
    "index_videos",
    "open_video",
]
