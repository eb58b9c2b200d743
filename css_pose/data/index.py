"""Find the videos under a root, measure what really decodes, and split them by video.

``index_videos(root)`` scans ``root`` recursively for video files and frame folders
(:mod:`css_pose.data.video`), decodes each one once to count its frames (so truncated files
report their real length), validates the annotation npz beside it (same stem, same folder; for
a frame folder ``<folder>.npz``), and caches the result in the user cache
(``$XDG_CACHE_HOME/css_pose/index-<hash of the root>.json``), never in the root: a folder of the
user's videos is only read. Cache entries are reused while the file's size and modification time
are unchanged. Files that cannot be used are skipped with one warning listing
each file and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from css_pose.artifacts.atomic import write_json
from css_pose.data.loading import AnnotationError, load_annotation
from css_pose.data.video import VideoInfo, VideoReadError, is_frame_folder, probe_video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
INDEX_FILE = ".css_pose_index.json"
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1


class VideoIndexError(RuntimeError):
    """No usable video under a root, or (``strict=True``) an unusable file; names the file."""


@dataclass(frozen=True)
class VideoEntry:
    """One usable video.

    ``path`` is absolute, ``rel_path`` relative to the root (posix). ``num_frames`` is the verified
    decodable count, ``fps`` frames/s, ``width``/``height`` pixels. ``annotation`` is the absolute
    path of a valid npz (None: unlabeled) with ``num_persons`` tracks. ``manifest_split`` is the
    split named by ``manifest.json`` (None without one). ``size_bytes``/``mtime_ns`` identify the
    file version that was measured, so a reader can detect a file changed since.
    """

    name: str
    path: str
    rel_path: str
    num_frames: int
    fps: float
    width: int
    height: int
    annotation: str | None
    num_persons: int
    manifest_split: str | None
    size_bytes: int
    mtime_ns: int

    @property
    def labeled(self) -> bool:
        return self.annotation is not None


@dataclass
class VideoIndex:
    """The usable videos under ``root`` (sorted by path) and ``problems``: rel path -> why."""

    root: Path
    videos: list[VideoEntry]
    problems: dict[str, str]

    def __len__(self) -> int:
        return len(self.videos)

    def split(self, name: str, val_fraction: float = 0.1) -> list[VideoEntry]:
        """The videos of split ``name`` ("train", "val" or "test").

        A video listed in ``manifest.json`` takes the manifest's split. Any other video goes to
        "val" when a hash of its relative path, mapped to [0, 1), is below ``val_fraction``, else to
        "train"; the same file always lands in the same split, whatever else is in the folder.
        When ``val_fraction > 0`` and two or more such videos exist, at least one goes to "val".
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        hashed = [v for v in self.videos if v.manifest_split is None]
        val = {v.rel_path for v in hashed if _unit_hash(v.rel_path) < val_fraction}
        if val_fraction > 0 and not val and len(hashed) >= 2:
            val = {min((v.rel_path for v in hashed), key=_unit_hash)}

        def split_of(v: VideoEntry) -> str:
            if v.manifest_split is not None:
                return v.manifest_split
            return "val" if v.rel_path in val else "train"

        return [v for v in self.videos if split_of(v) == name]


def _unit_hash(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _cache_paths(root: Path) -> list[Path]:
    """Where the index cache lives: the user cache (never the root, which is only read)."""
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "css_pose"
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    return [user / f"index-{digest}.json"]


def _load_cache(root: Path) -> dict:
    for path in _cache_paths(root):
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if cache.get("version") == _CACHE_VERSION:
            return cache
    return {"version": _CACHE_VERSION, "videos": {}, "annotations": {}}


def _save_cache(root: Path, cache: dict) -> None:
    for path in _cache_paths(root):
        try:
            write_json(path, cache)  # atomic: ranks indexing at once never see half a file
            return
        except OSError:
            pass


def _read_manifest(root: Path) -> dict[str, dict]:
    """rel video path -> manifest entry; empty without a manifest."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["videos"]
        manifest = {Path(e["video"]).as_posix(): e for e in entries}
    except (ValueError, KeyError, TypeError) as e:
        raise VideoIndexError(
            f"{path}: malformed manifest ({e!r}); expected "
            '{"videos": [{"video": "videos/NAME.mp4", "split": ...}]}'
        ) from e
    for rel, e in manifest.items():
        if e.get("split") not in SPLITS:
            raise VideoIndexError(
                f"{path}: {rel} has split {e.get('split')!r}, not one of {SPLITS}"
            )
    return manifest


def _scan(root: Path) -> list[str]:
    """Video files and frame folders under ``root`` (relative posix paths, sorted); a frame
    folder is one video, not searched further."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        frame_folders = [d for d in dirs if is_frame_folder(Path(folder) / d)]
        found.extend((Path(folder) / d).relative_to(root).as_posix() for d in frame_folders)
        dirs[:] = [d for d in dirs if d not in frame_folders]
        for name in files:
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                found.append((Path(folder) / name).relative_to(root).as_posix())
    return sorted(found)


def _probe(path: Path) -> tuple[VideoInfo | None, str | None]:
    try:
        return probe_video(path), None
    except VideoReadError as e:
        return None, str(e).removeprefix(f"{path}: ")


def index_videos(
    root: str | os.PathLike, strict: bool = False, cache: bool = True, workers: int = 4
) -> VideoIndex:
    """Index every video under ``root`` (extensions: mp4, avi, mov, mkv, webm; hidden folders skipped).

    Unusable videos (empty, truncated to nothing, not a video) are skipped; an unusable annotation
    leaves its video unlabeled. Both are reported in one warning, and in ``VideoIndex.problems``.
    ``strict=True`` raises VideoIndexError at the first unusable file instead. ``cache=False``
    re-measures every file and writes no cache. ``workers`` threads decode files in parallel.
    Raises VideoIndexError when no usable video is found.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise VideoIndexError(f"{root}: no such folder; point the data root at a folder of videos")
    manifest = _read_manifest(root)
    rel_paths = sorted(set(_scan(root)) | set(manifest))
    state = (
        _load_cache(root) if cache else {"version": _CACHE_VERSION, "videos": {}, "annotations": {}}
    )
    problems: dict[str, str] = {}

    stats = _measure(root, rel_paths, state, problems, workers)
    videos = []
    annotations = state["annotations"]
    state["annotations"] = {}  # refilled with the records of annotations still in use
    for rel in stats:
        record = state["videos"][rel]
        if record["error"] is not None:
            problems[rel] = record["error"]
            continue
        info = VideoInfo(**record["info"])
        annotation, persons = _annotation(
            root, rel, manifest.get(rel), info, annotations, state["annotations"], problems
        )
        size, mtime = stats[rel]
        videos.append(
            VideoEntry(
                name=manifest.get(rel, {}).get("name") or str(Path(rel).with_suffix("")),
                path=str(root / rel),
                rel_path=rel,
                num_frames=info.num_frames,
                fps=info.fps,
                width=info.width,
                height=info.height,
                annotation=annotation,
                num_persons=persons,
                manifest_split=manifest[rel]["split"] if rel in manifest else None,
                size_bytes=size,
                mtime_ns=mtime,
            )
        )
    if cache:
        state["videos"] = {k: v for k, v in state["videos"].items() if k in stats}
        _save_cache(root, state)

    _report(root, videos, problems, strict)
    return VideoIndex(root, videos, problems)


def _measure(root: Path, rel_paths, state: dict, problems: dict, workers: int) -> dict:
    """{rel path: (size, mtime_ns)} of the files that exist; files new or changed since the
    cache ``state`` measured them are probed again (``workers`` threads) into ``state``."""
    stats: dict[str, list[int]] = {}
    for rel in rel_paths:
        try:
            stats[rel] = _stat(root / rel)
        except OSError:
            problems[rel] = "listed in the manifest but missing"
    todo = [rel for rel in stats if state["videos"].get(rel, {}).get("stat") != stats[rel]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for rel, (info, error) in zip(todo, pool.map(lambda r: _probe(root / r), todo)):
            state["videos"][rel] = {
                "stat": stats[rel],
                "info": None if info is None else asdict(info),
                "error": error,
            }
    return stats


def _report(root: Path, videos: list, problems: dict, strict: bool) -> None:
    """Raise VideoIndexError (``strict`` and a problem, or no usable video) or warn once about
    the problems."""
    if problems and strict:
        rel, why = next(iter(problems.items()))
        raise VideoIndexError(
            f"{root / rel}: {why} (strict=True; {len(problems)} problem(s) in all)"
        )
    if not videos:
        shown = "; ".join(f"{rel}: {why}" for rel, why in list(problems.items())[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise VideoIndexError(
            f"no usable video under {root} (looked recursively for {', '.join(VIDEO_EXTENSIONS)} "
            "and folders of numbered frames"
            + (f"; {len(problems)} file(s) unusable: {shown}{more}" if problems else "")
            + ")"
        )
    if problems:
        lines = "\n".join(f"  {rel}: {why}" for rel, why in problems.items())
        warnings.warn(
            f"css_pose index of {root}: {len(problems)} problem(s):\n{lines}", stacklevel=3
        )


def _annotation(
    root: Path,
    rel: str,
    listed: dict | None,
    info: VideoInfo,
    previous: dict[str, dict],
    current: dict[str, dict],
    problems: dict[str, str],
) -> tuple[str | None, int]:
    """(absolute npz path or None, number of person tracks) for video ``rel``.

    Reuses the ``previous`` cache record of the npz while its size, mtime and the video's frame
    count are unchanged; stores the record in ``current`` and unusable files in ``problems``.
    """
    if listed is not None and "annotation" in listed:
        if listed["annotation"] is None:
            return None, 0
        npz_rel = Path(listed["annotation"]).as_posix()
    else:
        npz_rel = Path(rel).with_suffix(".npz").as_posix()
    path = root / npz_rel
    if not path.is_file():
        if listed is not None and listed.get("annotation"):
            problems[npz_rel] = f"annotation of {rel} is missing; the video is kept unlabeled"
        return None, 0
    key = [*_stat(path), info.num_frames]
    record = previous.get(npz_rel)
    if record is None or record["key"] != key:
        try:
            record = {
                "key": key,
                "persons": load_annotation(path, info.num_frames).num_persons,
                "error": None,
            }
        except AnnotationError as e:
            record = {"key": key, "persons": 0, "error": str(e).removeprefix(f"{path}: ")}
    current[npz_rel] = record
    if record["error"] is not None:
        problems[npz_rel] = f"{record['error']}; {rel} is kept unlabeled"
        return None, 0
    return str(path), record["persons"]
