"""Clustering, the 2-D map and nearest neighbours, on track embeddings.

Every space is standardised (zero mean, unit variance per dimension) before clustering, so a
baseline whose features have wildly different scales (MFCC statistics) is treated as fairly as a
VAE latent. The scaler, centres and map are plain arrays: a checkpoint stores them without pickle.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from musiclust.determinism import reproducible
from musiclust.errors import ParameterError

# scikit-learn is imported inside the functions that fit: serving (assign, nearest, place_on_map) needs
# only numpy, and importing sklearn took most of the app's first page (benchmark, app-start figure).
# The functions that fit run under ``reproducible()``: k-means' OpenMP chunks and BLAS pinned to one
# thread, so a seed gives the same clusters and map on any machine's core count (musiclust.determinism).

METHODS = ("kmeans", "agglomerative", "gmm")

# Scaling thresholds (issue #7), each from a measurement on the 2-core development machine (one thread,
# 32-D latents of 10 overlapping Gaussian clusters; README, "Large libraries", "The index at large N"):
# - k-means (n_init=10) costs ~12-17 us a track: 1.2 s at 100k, 16.7 s at 1M. MiniBatchKMeans finds the
#   same partition at 1M (ARI 0.998 against k-means, inertia +0.003 %) in 5.3 s, but at 10k-100k it stops
#   in worse local minima (inertia +1-3 %), so it is used only above KMEANS_MAX_TRACKS.
# - Ward agglomerative clustering needs O(N^2) memory (a 100k-track tree would need ~40 GB): refused above
#   AGGLOMERATIVE_MAX_TRACKS with a message, not left to run out of memory.
# - UMAP is fitted on a seeded sample of UMAP_FIT_MAX tracks above that size and the rest are placed with
#   UMAP's own ``transform``: the fit's cost grows faster than linearly, transform's linearly.
KMEANS_MAX_TRACKS = 100_000
AGGLOMERATIVE_MAX_TRACKS = 20_000
UMAP_FIT_MAX = 20_000
SILHOUETTE_SAMPLE = 10_000  # silhouette is O(N^2): above this many tracks it is computed on a seeded sample


@dataclass
class Standardizer:
    """z-score per dimension; dimensions with no spread are left unscaled.

    With ``unit_norm`` each standardised row is then divided by its length, so distances compare
    directions only (k-means on unit vectors is spherical k-means, i.e. cosine similarity): for models
    whose latent norm says how confident the posterior is rather than what the track is (the product of
    experts, see :attr:`~musiclust.models.base.BaseVAE.cluster_on_direction`).
    """

    mean: np.ndarray
    scale: np.ndarray
    unit_norm: bool = False

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale  # (N, D)
        if self.unit_norm:
            z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z.astype(np.float32)


def _check(x: np.ndarray, k: int) -> None:
    if x.ndim != 2:
        raise ParameterError(f"expected a (N, D) embedding, got shape {x.shape}")
    if not 2 <= k <= len(x):
        raise ParameterError(f"k must be between 2 and the number of tracks ({len(x)}), got {k}")


def kmeans_kind(n: int, minibatch_above: int = KMEANS_MAX_TRACKS) -> str:
    """Which k-means ``cluster`` runs for ``n`` tracks: ``"kmeans"`` or ``"minibatch_kmeans"``."""
    return "minibatch_kmeans" if n > minibatch_above else "kmeans"


def numbered_in_track_order(labels: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same partition with clusters numbered by their first member: the first track is in cluster 0,
    the first track outside it in cluster 1, and so on (a cluster without members keeps its place after).

    Why: k-means numbers clusters by its initialisation, so one partition can come out numbered otherwise
    after a last-bit change in the embedding. Measured: the AVX2 kernels in place of this machine's
    AVX-512 ones gave mvae_poe the same partition under other numbers (docs/results/kernels.json); a
    person comparing "cluster 2" across machines or retrains would be comparing different clusters."""
    firsts = {}
    for label in labels.tolist():
        firsts.setdefault(label, len(firsts))
    order = sorted(range(len(centres)), key=lambda c: (firsts.get(c, len(centres)), c))  # old numbers, new order
    new_of = np.empty(len(centres), dtype=np.int64)
    new_of[order] = np.arange(len(centres))
    return new_of[labels], centres[order]


@reproducible()
def cluster(
    x: np.ndarray, k: int, method: str = "kmeans", seed: int = 0, minibatch_above: int = KMEANS_MAX_TRACKS
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(N,)`` and centres ``(k, D)`` of ``x`` (already standardised) by ``method``, clusters
    numbered in track order (:func:`numbered_in_track_order`).

    ``kmeans`` is scikit-learn's full-batch k-means up to ``minibatch_above`` tracks and MiniBatchKMeans
    (seeded, 4,096-track batches, best of 10 initialisations) above, where it finds the same partition
    3x faster (see ``KMEANS_MAX_TRACKS``)."""
    return numbered_in_track_order(*_cluster(x, k, method, seed, minibatch_above))


def _cluster(x: np.ndarray, k: int, method: str, seed: int, minibatch_above: int) -> tuple[np.ndarray, np.ndarray]:
    _check(x, k)
    from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        if kmeans_kind(len(x), minibatch_above) == "minibatch_kmeans":
            model = MiniBatchKMeans(n_clusters=k, n_init=10, batch_size=4096, random_state=seed).fit(x)
        else:
            model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
        return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float32)
    if method == "gmm":
        model = GaussianMixture(n_components=k, covariance_type="diag", n_init=3, random_state=seed).fit(x)
        return model.predict(x).astype(np.int64), model.means_.astype(np.float32)
    if method == "agglomerative":
        if len(x) > AGGLOMERATIVE_MAX_TRACKS:
            raise ParameterError(
                f"agglomerative clustering needs memory in N^2: {len(x):,} tracks is more than {AGGLOMERATIVE_MAX_TRACKS:,}; "
                "use kmeans or gmm for a collection this large"
            )
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x).astype(np.int64)
        centres = np.stack([x[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
        return labels, centres
    raise ParameterError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")


def assign(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and the distance to it, for new points (what k-means' ``predict`` does)."""
    dist = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=2)  # (N, k)
    labels = dist.argmin(axis=1)
    return labels, dist[np.arange(len(x)), labels]


@reproducible()
def silhouette_sweep(x: np.ndarray, ks, seed: int = 0, sample: int = SILHOUETTE_SAMPLE) -> dict[int, float]:
    """Silhouette of k-means for each k: how many clusters the data itself suggests (on a seeded sample of
    ``sample`` tracks above that size: the score is O(N^2))."""
    from sklearn.metrics import silhouette_score

    size = sample if len(x) > sample else None
    return {
        int(k): float(silhouette_score(x, cluster(x, int(k), "kmeans", seed)[0], sample_size=size, random_state=seed))
        for k in ks if 2 <= k < len(x)
    }


EXACT_KNN_MAX = 4096  # up to this many tracks the map's neighbour graph is computed exactly with numpy


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of every row of ``x`` (itself first, at distance 0), Euclidean, exact:
    ``(N, k)`` int32 indices and float32 distances, in row blocks so memory stays ~N x 512."""
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(axis=1)
    indices = np.empty((len(x), k), dtype=np.int32)
    distances = np.empty((len(x), k), dtype=np.float32)
    for start in range(0, len(x), 512):
        rows = np.arange(start, min(start + 512, len(x)))
        d2 = np.maximum(sq[rows, None] - 2.0 * (x[rows] @ x.T) + sq[None, :], 0.0)  # (b, N)
        d2[np.arange(len(rows)), rows] = -1.0  # each row its own first neighbour, whatever the rounding
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
        indices[rows] = np.take_along_axis(part, order, axis=1)
        distances[rows] = np.sqrt(np.maximum(np.take_along_axis(d2, indices[rows], axis=1), 0.0))
    return indices, distances


def map_kind(n: int, fit_max: int = UMAP_FIT_MAX) -> str:
    """How ``umap_map`` maps ``n`` tracks: ``"umap"`` (one fit) or ``"umap_sample_transform"``."""
    return "umap_sample_transform" if n > fit_max else "umap"


def map_sample(n: int, fit_max: int, seed: int) -> np.ndarray:
    """The sorted rows ``(fit_max,)`` a large map is fitted on: uniform, seeded, so a retrain with the same
    seed draws the same ones."""
    return np.sort(np.random.default_rng(seed).choice(n, size=fit_max, replace=False))


# UMAP's numba kernels that umap-learn compiles without ``cache=True``, which every process that fits a map
# then compiles again: ~19 s of CPU per process for the three of every map (profiled, ``train`` on 20 tracks:
# 15 s for the two parallel kernels of the fuzzy graph, 3 s for the layout epoch, more than the training
# itself on a small library), and ~13 s more for the three of a large library's sample + transform. Only
# the sequential layout kernel is listed: its parallel twin shares its Python function, so the two would
# share one cache index (the maps are fitted with n_jobs=1, which uses the sequential one).
_UNCACHED_KERNELS = (("umap.umap_", "smooth_knn_dist"), ("umap.umap_", "compute_membership_strengths"),
                     ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
                     ("umap.utils", "fast_knn_indices"), ("umap.utils", "submatrix"), ("umap.distances", "euclidean"))


@functools.cache  # once per process: the kernels' caching is process-wide state
def load_umap():
    """``umap``, with :data:`_UNCACHED_KERNELS` cached on disk by numba (beside umap's own sources, or in
    ``NUMBA_CACHE_DIR``), so they are compiled once per machine and umap-learn version, not once per process.
    The cached machine code is what numba would compile again (same function, types and flags), so maps
    are bit-identical either way. A kernel that a later umap-learn renames, or one numba finds no writable
    place to cache, is left as it is (compiled per process, as before)."""
    import importlib

    import umap  # imported here: numba compilation makes it slow to import, and only training needs it

    for module_name, name in _UNCACHED_KERNELS:
        kernel = getattr(importlib.import_module(module_name), name, None)
        if kernel is not None and hasattr(kernel, "enable_caching"):
            try:
                kernel.enable_caching()
            except RuntimeError:  # "no locator available": nowhere to write the cache
                pass
    return umap


@reproducible()
def umap_map(x: np.ndarray, seed: int = 0, n_neighbors: int = 15, fit_max: int = UMAP_FIT_MAX) -> np.ndarray:
    """2-D UMAP of ``x``: ``(N, 2)`` float32 (fitted once at training time and saved).

    Up to ``EXACT_KNN_MAX`` tracks the neighbour graph is exact and computed here, which spares UMAP's
    approximate search (pynndescent) and its numba compilation: ~4 s of every retrain (benchmark,
    training figure). Larger collections use UMAP's own search. Above ``fit_max`` tracks UMAP is fitted on
    a seeded uniform sample of ``fit_max`` of them (:func:`map_sample`) and every other track is placed by
    UMAP's ``transform`` (its neighbours in the sample, then a few epochs of the same layout optimisation),
    which costs linearly in N; its trustworthiness against a full fit was measured (README, Large
    libraries: 0.808 vs 0.823 at 20k tracks). Up to ``fit_max`` the map is exactly what it was before sampling existed.
    """
    if len(x) > fit_max:
        return _sample_and_transform(x, seed, n_neighbors, fit_max)
    umap = load_umap()

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    knn = exact_knn(x, n_neighbors) if len(x) <= EXACT_KNN_MAX else None
    reducer = umap.UMAP(
        n_components=2, n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_jobs=1,
        precomputed_knn=(*knn, None) if knn is not None else (None, None, None),
    )
    with warnings.catch_warnings():  # "transform will be unavailable": the map never transforms (see place_on_map)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return reducer.fit_transform(x).astype(np.float32)


def _sample_and_transform(x: np.ndarray, seed: int, n_neighbors: int, fit_max: int) -> np.ndarray:
    """UMAP fitted on :func:`map_sample` rows, UMAP ``transform`` for the others; ``(N, 2)`` float32. The
    reducer is used and dropped here: nothing of it is saved (a new upload is placed by ``place_on_map``)."""
    umap = load_umap()

    rows = map_sample(len(x), fit_max, seed)  # (fit_max,)
    rest = np.setdiff1d(np.arange(len(x)), rows, assume_unique=True)  # (N - fit_max,)
    n_neighbors = max(2, min(n_neighbors, fit_max - 1))
    # UMAP's own neighbour search (pynndescent), not exact_knn: transform needs the search index it builds.
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, transform_seed=seed, n_jobs=1)
    coords = np.empty((len(x), 2), dtype=np.float32)
    coords[rows] = reducer.fit_transform(x[rows])
    coords[rest] = reducer.transform(x[rest])
    return coords


def squared_norms(x: np.ndarray) -> np.ndarray:
    """``(N,)`` float32 squared row norms of ``x``, for :func:`nearest` (computed once per collection)."""
    return np.einsum("ij,ij->i", x, x).astype(np.float32)


def nearest(
    query: np.ndarray, x: np.ndarray, k: int = 5, exclude: Optional[int] = None, sq_norms: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the ``k`` rows of ``x`` nearest to one ``query`` ``(D,)``: exact.

    With ``sq_norms`` (:func:`squared_norms` of ``x``) the search is one matrix-vector product,
    ``|x|^2 - 2 x.q``, with no (N, D) temporary; the ``k + 16`` best candidates are then re-ranked on their
    true distances, so float32 cancellation cannot reorder close neighbours. Exact search stays cheap for a
    single query (measured, 32-D, one thread: 2.6 ms at 100k tracks, 20 ms at 1M), which is why serving uses no
    approximate index: pynndescent is only used where exact is slow, for UMAP's all-pairs graph.
    """
    n = len(x)
    k = min(k, n - (exclude is not None))
    if sq_norms is None:
        score = np.linalg.norm(x - query[None, :], axis=1)  # (N,) true distances
        candidates = k
    else:
        score = sq_norms - 2.0 * (x @ query.astype(x.dtype, copy=False))  # (N,) distance^2 - |q|^2
        candidates = min(n, k + 16 + (exclude is not None))
    if exclude is not None:
        score[exclude] = np.inf
    order = np.argpartition(score, candidates - 1)[:candidates] if candidates < n else np.arange(n)
    dist = np.linalg.norm(x[order] - query[None, :], axis=1)  # (candidates,)
    if exclude is not None:
        dist[order == exclude] = np.inf
    keep = np.argsort(dist, kind="stable")[:k]
    return order[keep], dist[keep]


def place_on_map(
    query: np.ndarray, x: np.ndarray, coords: np.ndarray, k: int = 10, neighbours: Optional[tuple[np.ndarray, np.ndarray]] = None
) -> np.ndarray:
    """Map position ``(2,)`` of a new point: the inverse-distance-weighted mean of its ``k`` nearest
    neighbours' positions. Unlike UMAP's ``transform`` it needs only arrays (no pickled reducer) and
    takes well under a millisecond; a point identical to a collection track lands on it. ``neighbours``
    (indices and distances from :func:`nearest`, nearest first) spares a second search."""
    idx, dist = neighbours if neighbours is not None else nearest(query, x, k)
    idx, dist = idx[:k], dist[:k]
    if dist[0] < 1e-9:
        return coords[idx[0]].astype(np.float32)
    weights = 1.0 / dist**2
    return (weights[:, None] * coords[idx]).sum(axis=0).astype(np.float32) / weights.sum()
