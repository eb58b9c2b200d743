"""css_pose: learn human-pose representations from unlabeled video, then fit pose heads with few labels."""

__version__ = "0.1.0"
