"""The applications: what a command runs (docs/architecture.md).

Apps import the library (data, models, losses, codecs, metrics, probe, methods, artifacts, viz) and
:mod:`css_pose.apps.support`, never each other (tests/test_architecture.py checks it).
"""
