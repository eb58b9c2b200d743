"""The disentanglement picture: k-means, PCA and the z_v / z_i embedding figure."""

from __future__ import annotations

import numpy as np

from css_pose.viz import embedding_figure, kmeans, pca_2d


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], float)
    x = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    labels = kmeans(x, 3)
    # Each blob gets one label, and the three labels differ.
    groups = [set(labels[i * 30 : (i + 1) * 30]) for i in range(3)]
    assert all(len(g) == 1 for g in groups)
    assert len(set.union(*groups)) == 3


def test_pca_keeps_the_main_direction():
    rng = np.random.default_rng(1)
    t = rng.normal(0, 5, 200)
    x = np.stack([t, 2 * t, rng.normal(0, 0.01, 200)], 1)
    xy, share = pca_2d(x)
    assert xy.shape == (200, 2) and share > 0.999
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.999


def test_embedding_figure_has_both_panels():
    rng = np.random.default_rng(2)
    n = 60
    poses = rng.normal(0, 100, (n, 17, 3))
    videos = np.repeat(np.arange(6), 10)
    image = embedding_figure(rng.normal(size=(n, 8)), rng.normal(size=(n, 4)), poses, videos)
    single = embedding_figure(rng.normal(size=(n, 8)), None, poses, videos)
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[1] > 1.6 * single.shape[1]  # two panels side by side
    assert image.std() > 10
