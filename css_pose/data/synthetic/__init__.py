"""Synthetic pose videos with exact ground truth: articulated people rendered with OpenCV.

``generate_dataset`` writes a whole set (videos, annotations, splits, manifest); ``render_video``
renders one video in memory. Format and conventions: docs/data_format.md.
"""

from css_pose.data.synthetic.appearance import Occluder
from css_pose.data.synthetic.generate import generate_dataset
from css_pose.data.synthetic.io import load_motion_file
from css_pose.data.synthetic.video import SyntheticVideo, render_video

__all__ = ["Occluder", "SyntheticVideo", "generate_dataset", "load_motion_file", "render_video"]
