"""Track ids across the frames of a crowded video: each live track's last pose matched to the
next frame's people by OKS (:class:`Tracker`, :func:`assign_tracks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from css_pose.crowd import FramePerson, box_iou, match_people


@dataclass
class _Track:
    keypoints: np.ndarray
    id: int
    missed: int = 0


class Tracker:
    """Track ids frame by frame. Each live track's last pose is matched to the new frame's
    people by OKS (Hungarian, at least ``min_oks``): a matched person takes the track's id; the
    others start new tracks. A track that finds no one stays alive for ``max_missed`` frames,
    so a person missed for a frame or two keeps their id (on the crowd benchmark: 333 identity
    switches instead of 435 with the simulated detector, 135 instead of 141 with true boxes).
    Carrying the tracks' poses along the optical flow before matching was measured worse
    (468 and 209) and is not done."""

    def __init__(self, sigmas: np.ndarray, min_oks: float = 0.3, max_missed: int = 3):
        self.sigmas, self.min_oks, self.max_missed = sigmas, min_oks, max_missed
        self.tracks: list[_Track] = []
        self.count = 0

    def update(self, people: list[FramePerson]) -> None:
        """Set ``track`` of each of ``people`` (the next frame's), in place."""
        pairs = match_people(
            [t.keypoints for t in self.tracks],
            [p.keypoints for p in people],
            "oks",
            self.sigmas,
            self.min_oks,
        )
        taken = {j: i for i, j in pairs}
        old = len(self.tracks)
        for j, person in enumerate(people):
            if j in taken:
                track = self.tracks[taken[j]]
                track.keypoints, track.missed = person.keypoints, 0
            else:
                track = _Track(person.keypoints, self.count)
                self.tracks.append(track)
                self.count += 1
            person.track = track.id
        matched = set(taken.values())
        live = []
        for i, track in enumerate(self.tracks):
            if i < old and i not in matched:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
            live.append(track)
        self.tracks = live


def assign_tracks(
    frames: Sequence[list[FramePerson]], sigmas: np.ndarray, min_oks: float = 0.3
) -> int:
    """Give every person a ``track`` id, in place (:class:`Tracker`, frame after frame).
    Returns the number of tracks."""
    tracker = Tracker(sigmas, min_oks)
    for people in frames:
        tracker.update(people)
    return tracker.count


def follow_boxes(previous: np.ndarray, rows: np.ndarray, min_iou: float) -> dict[int, int]:
    """Which row of ``rows`` (P, 5) continues which of the ``previous`` boxes (Q, 4) xyxy px:
    {row: previous index}. Pairs are taken greedily by IoU, largest first, each at least
    ``min_iou``; a lone box in both frames continues whatever its IoU (as one person would)."""
    if len(previous) == 1 and len(rows) == 1:
        return {0: 0}
    if not len(previous) or not len(rows):
        return {}
    iou = np.stack([box_iou(rows[:, :4], box)[:, 0] for box in previous], axis=1)  # (P, Q)
    pairs: dict[int, int] = {}
    for flat in np.argsort(-iou, axis=None):
        r, q = divmod(int(flat), iou.shape[1])
        if iou[r, q] < min_iou:
            break
        if r not in pairs and q not in pairs.values():
            pairs[r] = q
    return pairs
