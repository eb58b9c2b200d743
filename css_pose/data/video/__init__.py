"""Video files and frame folders in, uint8 RGB frames out; and mp4 files written.

- :mod:`~css_pose.data.video.reader`: the reader interface (frames by index, in presentation
  order, (N, H, W, 3) uint8 RGB), :class:`VideoReadError`, :class:`VideoInfo` and the
  per-process cache of decoded short videos;
- :mod:`~css_pose.data.video.pyav_reader`: PyAV, the reference and fallback decoder, and
  :func:`probe_video`, which measures the frames that really decode;
- :mod:`~css_pose.data.video.decord_reader`: decord, the fast reader, with its traps guarded;
- :mod:`~css_pose.data.video.frame_folder`: folders of numbered images read as videos;
- :mod:`~css_pose.data.video.opening`: :func:`open_video` by backend name and
  :func:`cached_reader`, the per-process reader cache that DataLoader workers use;
- :mod:`~css_pose.data.video.stream`: :class:`VideoStream`, a whole video front to back with
  frame indices from the timestamps (what ``css-pose predict`` reads);
- :mod:`~css_pose.data.video.writer`: :class:`VideoWriter`, H.264 mp4 written atomically.
"""

from css_pose.data.video.decord_reader import DecordReader
from css_pose.data.video.frame_folder import (
    FRAME_FOLDER_FPS,
    IMAGE_EXTENSIONS,
    FrameFolderReader,
    frame_files,
    is_frame_folder,
)
from css_pose.data.video.opening import (
    BACKENDS,
    READER_CACHE_SIZE,
    cached_reader,
    clear_reader_cache,
    drop_cached_reader,
    open_video,
)
from css_pose.data.video.pyav_reader import PyAVReader, probe_video
from css_pose.data.video.reader import (
    CACHE_VIDEO_MB,
    FRAME_CACHE_MB,
    ReaderFactory,
    VideoInfo,
    VideoReader,
    VideoReadError,
    clear_frame_cache,
    frame_cache_info,
)
from css_pose.data.video.stream import FrameFolderStream, VideoStream
from css_pose.data.video.writer import VideoWriter

__all__ = [
    "BACKENDS",
    "CACHE_VIDEO_MB",
    "FRAME_CACHE_MB",
    "FRAME_FOLDER_FPS",
    "IMAGE_EXTENSIONS",
    "READER_CACHE_SIZE",
    "DecordReader",
    "FrameFolderReader",
    "PyAVReader",
    "ReaderFactory",
    "VideoInfo",
    "VideoReadError",
    "VideoReader",
    "VideoStream",
    "FrameFolderStream",
    "VideoWriter",
    "cached_reader",
    "clear_frame_cache",
    "clear_reader_cache",
    "drop_cached_reader",
    "frame_cache_info",
    "frame_files",
    "is_frame_folder",
    "open_video",
    "probe_video",
]
