"""Small test videos whose frames encode their own index, plus npz annotations and broken files.

Frame ``i`` of :func:`write_video` carries ``i`` in binary as a band of black/white blocks along
its top edge (:func:`frame_index` reads it back), over a red/green gradient and a blue block texture
that scrolls 2 px per frame, so every frame is different and truncating a file leaves a decodable
prefix. Optional white dots mark keypoints so crops can be checked against transformed labels.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import av
import numpy as np

from css_pose.skeleton import JOINT_NAMES, NUM_JOINTS

CODE_BITS = 10
CODE_HEIGHT = 12


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Red/green gradient (H, W, 2) and a blue block texture (H, W + 512) to scroll through."""
    gradient = np.stack(
        np.broadcast_arrays(
            np.linspace(0, 150, width, dtype=np.float32)[None, :],
            np.linspace(0, 150, height, dtype=np.float32)[:, None],
        ),
        -1,
    ).astype(np.uint8)
    blocks = np.random.default_rng(7).integers(0, 120, (height // 8 + 1, (width + 512) // 8 + 1))
    texture = np.kron(blocks, np.ones((8, 8), np.int64))[:height].astype(np.uint8)
    return gradient, texture


def frame_pattern(index: int, width: int, height: int, static: bool = False) -> np.ndarray:
    """The RGB image (H, W, 3) uint8 of frame ``index`` (``static``: every frame equal)."""
    gradient, texture = _background(width, height)
    shift = 0 if static else (2 * index) % 512
    image = np.empty((height, width, 3), np.uint8)
    image[..., :2] = gradient
    image[..., 2] = texture[:, shift : shift + width]
    block = width // CODE_BITS
    code = 0 if static else index
    for bit in range(CODE_BITS):
        image[:CODE_HEIGHT, bit * block : (bit + 1) * block] = 255 * ((code >> bit) & 1)
    return image


def frame_index(frame: np.ndarray) -> int:
    """Read back the index written by :func:`frame_pattern` from a decoded (H, W, 3) frame."""
    block = frame.shape[1] // CODE_BITS
    bits = [
        frame[2 : CODE_HEIGHT - 2, b * block + 2 : (b + 1) * block - 2].mean() > 128
        for b in range(CODE_BITS)
    ]
    return int(sum(int(bit) << b for b, bit in enumerate(bits)))


def draw_dot(image: np.ndarray, x: float, y: float, radius: float = 2.5) -> None:
    """Paint a white disc centred on (x, y) px (pixel centres at integers), in place."""
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    image[(xs - x) ** 2 + (ys - y) ** 2 <= radius**2] = 255


def write_video(
    path: str | Path,
    num_frames: int,
    width: int = 128,
    height: int = 96,
    fps: int = 25,
    gop: int = 12,
    static: bool = False,
    dots: np.ndarray | None = None,
    faststart: bool = False,
) -> Path:
    """Write an H.264 (yuv420p) video of :func:`frame_pattern` frames.

    ``dots`` (T, K, 2) px draws K white dots on each frame. ``faststart`` puts the index (moov) at
    the front, so a file cut short still opens and decodes its first frames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # A static video is coded losslessly so that its decoded frames are identical too.
        crf = "0" if static else "16"
        stream.options = {"crf": crf, "g": str(gop), "keyint_min": str(gop), "preset": "veryfast"}
        for i in range(num_frames):
            image = frame_pattern(i, width, height, static)
            for x, y in [] if dots is None else dots[i]:
                draw_dot(image, x, y)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def person_track(
    num_frames: int, width: int, height: int, seed: int = 0, box_size: float = 40.0
) -> dict[str, np.ndarray]:
    """One synthetic person: a box drifting across the frame and keypoints inside it.

    Returns ``keypoints_2d`` (T, J, 2) px, ``visibility`` (T, J) uint8, ``keypoints_3d`` (T, J, 3)
    mm and ``bboxes`` (T, 4) xyxy px, following the npz annotation format.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float32)
    cx = width * 0.3 + (width * 0.4) * t / max(num_frames - 1, 1)
    cy = np.full_like(cx, height * 0.5)
    rel = rng.uniform(-0.4, 0.4, (NUM_JOINTS, 2)).astype(np.float32) * box_size
    kp = np.stack([cx, cy], -1)[:, None, :] + rel[None]
    half = box_size / 2
    bboxes = np.stack([cx - half, cy - half, cx + half, cy + half], -1)
    kp3 = np.concatenate([rel * 10.0, np.full((NUM_JOINTS, 1), 3000.0, np.float32)], -1)
    return {
        "keypoints_2d": kp.astype(np.float32),
        "visibility": np.ones((num_frames, NUM_JOINTS), np.uint8),
        "keypoints_3d": np.repeat(kp3[None], num_frames, 0).astype(np.float32),
        "bboxes": bboxes.astype(np.float32),
    }


def write_annotation(path: str | Path, tracks: list[dict[str, np.ndarray]], fps: int = 25) -> Path:
    """Save person tracks from :func:`person_track` as an annotation npz.

    One track is stored without a person axis; several get a leading (P, ...) axis and track_ids.
    """
    arrays = {k: np.stack([tr[k] for tr in tracks]) for k in tracks[0]}
    if len(tracks) == 1:
        arrays = {k: v[0] for k, v in arrays.items()}
    else:
        arrays["track_ids"] = np.arange(len(tracks))
    path = Path(path)
    np.savez(
        path,
        **arrays,
        camera=np.array([100.0, 100.0, 64.0, 48.0], np.float32),
        fps=np.float32(fps),
        joint_names=np.array(JOINT_NAMES),
    )
    return path


def make_video_set(
    root: str | Path,
    lengths: list[int],
    labeled: bool = True,
    width: int = 128,
    height: int = 96,
    manifest_splits: list[str] | None = None,
) -> list[Path]:
    """Write ``ROOT/videos/vid_XXX.mp4`` (+ ``.npz`` when ``labeled``), one per entry of ``lengths``.

    With ``manifest_splits`` also write ``ROOT/manifest.json`` assigning each video its split.
    """
    root = Path(root)
    paths = []
    for i, n in enumerate(lengths):
        video = write_video(root / "videos" / f"vid_{i:03d}.mp4", n, width, height)
        if labeled:
            write_annotation(video.with_suffix(".npz"), [person_track(n, width, height, seed=i)])
        paths.append(video)
    if manifest_splits is not None:
        entries = [
            {
                "name": p.stem,
                "video": f"videos/{p.name}",
                "annotation": f"videos/{p.stem}.npz" if labeled else None,
                "split": split,
            }
            for p, split in zip(paths, manifest_splits)
        ]
        (root / "manifest.json").write_text(json.dumps({"videos": entries}))
    return paths


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes, in place."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def damage_packets(src: str | Path, dst: str | Path, packets: set[int]) -> Path:
    """Copy ``src`` to ``dst`` (same container) with the payload of ``packets`` (0-based, in
    decode order) replaced by random bytes of the same size, timestamps kept: those frames do
    not decode. With an intra-only video (``write_video(..., gop=1)``) packet k is frame k and
    every other frame decodes exactly."""
    dst = Path(dst)
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        k = 0
        for packet in source.demux(source.streams.video[0]):
            if packet.size == 0:  # the demuxer's end-of-stream flush packet
                continue
            if k in packets:
                garbage = np.random.default_rng(k).integers(0, 256, packet.size, dtype=np.uint8)
                bad = av.Packet(garbage.tobytes())
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                bad.is_keyframe = packet.is_keyframe
                packet = bad
            packet.stream = stream
            target.mux(packet)
            k += 1
    return dst
