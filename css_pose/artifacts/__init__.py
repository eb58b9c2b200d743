"""What runs leave on disk: files written atomically (:mod:`css_pose.artifacts.atomic`)."""
