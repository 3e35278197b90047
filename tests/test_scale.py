"""Large-collection paths (issue #7): MiniBatchKMeans, UMAP on a sample + transform, sampled silhouette,
exact search with cached norms, and the sampled map. Thresholds are lowered through their parameters, so
the code paths that serve 100k tracks run here on a few thousand synthetic latents (index scaling does
not depend on what the latents came from)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musiclust.analysis import clustering
from musiclust.errors import ParameterError
from musiclust.analysis.metrics import internal_scores, score_partition


def _blobs(n: int, k: int = 5, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    centres = rng.normal(scale=6.0, size=(k, d))
    return (centres[truth] + rng.normal(size=(n, d))).astype(np.float32), truth


def test_minibatch_kmeans_takes_over_above_the_threshold_and_finds_the_blobs():
    x, truth = _blobs(3000)
    assert clustering.kmeans_kind(3000, minibatch_above=1000) == "minibatch_kmeans"
    assert clustering.kmeans_kind(3000) == "kmeans"
    labels, centres = clustering.cluster(x, 5, seed=0, minibatch_above=1000)
    assert centres.shape == (5, 16) and labels.shape == (3000,)
    assert score_partition(x, labels, truth)["ari"] > 0.95
    again, _ = clustering.cluster(x, 5, seed=0, minibatch_above=1000)
    np.testing.assert_array_equal(labels, again)


def test_agglomerative_refuses_sizes_whose_memory_grows_quadratically(monkeypatch):
    monkeypatch.setattr(clustering, "AGGLOMERATIVE_MAX_TRACKS", 100)
    with pytest.raises(ParameterError, match="agglomerative"):
        clustering.cluster(_blobs(200)[0], 3, method="agglomerative")


def test_map_is_fitted_on_a_sample_and_transforms_the_rest_deterministically():
    x, truth = _blobs(900)
    assert clustering.map_kind(900, fit_max=300) != clustering.map_kind(900)
    coords = clustering.umap_map(x, seed=0, fit_max=300)
    assert coords.shape == (900, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    np.testing.assert_array_equal(coords, clustering.umap_map(x, seed=0, fit_max=300))
    # transformed points land with their own blob: a 2-D k-means of the map recovers the blobs
    rest = np.setdiff1d(np.arange(900), clustering.map_sample(900, 300, 0))
    labels, _ = clustering.cluster(coords, 5, seed=0)
    assert score_partition(coords[rest], labels[rest], truth[rest])["ari"] > 0.9


def test_umap_kernels_are_cached_on_disk_and_give_the_same_map(tmp_path):
    """UMAP's kernels are cached on disk (so a second process loads them instead of compiling ~19 s), and
    the map drawn with them is the map of a process that compiles them afresh, bit for bit."""
    import subprocess
    import sys

    x, _ = _blobs(300)
    here = clustering.umap_map(x, seed=0)
    used = {f"{m}.{n}": getattr(sys.modules[m], n) for m, n in clustering._UNCACHED_KERNELS if getattr(sys.modules[m], n).signatures}
    assert {"umap.umap_.smooth_knn_dist", "umap.umap_.compute_membership_strengths"} <= set(used)  # this map's kernels
    for name, kernel in used.items():
        folder = Path(kernel._cache._cache_path)
        assert list(folder.glob(f"*.{kernel.py_func.__name__}-*.nbi")), f"{name}: no cache index in {folder}"
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np; from musiclust.analysis import clustering; clustering._UNCACHED_KERNELS = (); "
            "np.save(sys.argv[2], clustering.umap_map(np.load(sys.argv[1]), seed=0))")  # numba compiles every kernel here
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "map.npy")],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), here)


def test_silhouette_is_sampled_above_the_threshold_and_says_so():
    x, truth = _blobs(2000)
    full = internal_scores(x, truth, silhouette_sample=5000)
    sampled = internal_scores(x, truth, silhouette_sample=500)
    assert "silhouette_sample" not in full and sampled["silhouette_sample"] == 500
    assert abs(full["silhouette"] - sampled["silhouette"]) < 0.05
    assert full["calinski_harabasz"] == sampled["calinski_harabasz"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_with_cached_norms_equals_the_plain_search(dtype):
    x, _ = _blobs(5000)
    x = x.astype(dtype)
    norms = clustering.squared_norms(x)
    for q in (x[17], x[4000] + 0.01):
        plain = clustering.nearest(q, x, 10)
        fast = clustering.nearest(q, x, 10, sq_norms=norms)
        np.testing.assert_array_equal(plain[0], fast[0])
        np.testing.assert_allclose(plain[1], fast[1], rtol=1e-5, atol=1e-5)
    idx, _ = clustering.nearest(x[3], x, 5, exclude=3, sq_norms=norms)
    assert 3 not in idx


def test_map_figure_draws_a_sample_over_a_density_layer_and_says_so():
    from musiclust.serving import figures as ui

    n, rng = 3000, np.random.default_rng(1)
    frame = pd.DataFrame({
        "id": [f"t{i}" for i in range(n)], "title": [f"title {i}" for i in range(n)], "artist": "a",
        "group": rng.choice(["g1", "g2"], n), "cluster": rng.integers(0, 4, n),
        "x": rng.normal(size=n), "y": rng.normal(size=n),
    })
    for column in ("title", "artist", "group"):
        frame[f"{column}_html"] = frame[column].map(html.escape)
    fig = ui.map_figure(frame, "cluster", max_points=1000)
    points = [t for t in fig.data if t.type == "scattergl"]
    assert sum(len(t.x) for t in points) == 1000
    assert any(t.type == "heatmap" and t.customdata is None for t in fig.data), "density layer, not clickable"
    assert "showing 1,000 of 3,000 tracks" in fig.layout.annotations[0].text
    ids = {str(row[0]) for t in points for row in t.customdata}
    assert len(ids) == 1000 and ids <= set(frame["id"])
    again = ui.map_figure(frame, "cluster", max_points=1000)
    assert ids == {str(row[0]) for t in again.data if t.type == "scattergl" for row in t.customdata}, "same sample on every rerun"
    full = ui.map_figure(frame, "cluster", max_points=None)
    assert not full.layout.annotations and sum(len(t.x) for t in full.data) == n
