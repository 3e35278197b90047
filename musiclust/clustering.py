"""Clustering, the 2-D map and nearest neighbours, on track embeddings.

Every space is standardised (zero mean, unit variance per dimension) before clustering, so a
baseline whose features have wildly different scales (MFCC statistics) is treated as fairly as a
VAE latent. The scaler, centres and map are plain arrays: a checkpoint stores them without pickle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from musiclust.errors import ParameterError

# scikit-learn is imported inside the functions that fit: serving (assign, nearest, place_on_map) needs
# only numpy, and importing sklearn took most of the app's first page (benchmark, app-start figure).

METHODS = ("kmeans", "agglomerative", "gmm")


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


def cluster(x: np.ndarray, k: int, method: str = "kmeans", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(N,)`` and centres ``(k, D)`` of ``x`` (already standardised) by ``method``."""
    _check(x, k)
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
        return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float32)
    if method == "gmm":
        model = GaussianMixture(n_components=k, covariance_type="diag", n_init=3, random_state=seed).fit(x)
        return model.predict(x).astype(np.int64), model.means_.astype(np.float32)
    if method == "agglomerative":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x).astype(np.int64)
        centres = np.stack([x[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
        return labels, centres
    raise ParameterError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")


def assign(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and the distance to it, for new points (what k-means' ``predict`` does)."""
    dist = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=2)  # (N, k)
    labels = dist.argmin(axis=1)
    return labels, dist[np.arange(len(x)), labels]


def silhouette_sweep(x: np.ndarray, ks, seed: int = 0) -> dict[int, float]:
    """Silhouette of k-means for each k: how many clusters the data itself suggests."""
    from sklearn.metrics import silhouette_score

    return {int(k): float(silhouette_score(x, cluster(x, int(k), "kmeans", seed)[0])) for k in ks if 2 <= k < len(x)}


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


def umap_map(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP of ``x``: ``(N, 2)`` float32 (fitted once at training time and saved).

    Up to ``EXACT_KNN_MAX`` tracks the neighbour graph is exact and computed here, which spares UMAP's
    approximate search (pynndescent) and its numba compilation: ~4 s of every retrain (benchmark,
    training figure). Larger collections use UMAP's own search.
    """
    import umap  # imported here: numba compilation makes it slow to import, and only training needs it

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    knn = exact_knn(x, n_neighbors) if len(x) <= EXACT_KNN_MAX else None
    reducer = umap.UMAP(
        n_components=2, n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_jobs=1,
        precomputed_knn=(*knn, None) if knn is not None else (None, None, None),
    )
    with warnings.catch_warnings():  # "transform will be unavailable": the map never transforms (see place_on_map)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return reducer.fit_transform(x).astype(np.float32)


def nearest(query: np.ndarray, x: np.ndarray, k: int = 5, exclude: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the ``k`` rows of ``x`` nearest to one ``query`` ``(D,)``."""
    dist = np.linalg.norm(x - query[None, :], axis=1)  # (N,)
    if exclude is not None:
        dist[exclude] = np.inf
    k = min(k, len(x) - (exclude is not None))
    order = np.argpartition(dist, k - 1)[:k] if k < len(x) else np.arange(len(x))
    order = order[np.argsort(dist[order])]
    return order, dist[order]


def place_on_map(query: np.ndarray, x: np.ndarray, coords: np.ndarray, k: int = 10) -> np.ndarray:
    """Map position ``(2,)`` of a new point: the inverse-distance-weighted mean of its ``k`` nearest
    neighbours' positions. Unlike UMAP's ``transform`` it needs only arrays (no pickled reducer) and
    takes well under a millisecond; a point identical to a collection track lands on it."""
    idx, dist = nearest(query, x, k)
    if dist[0] < 1e-9:
        return coords[idx[0]].astype(np.float32)
    weights = 1.0 / dist**2
    return (weights[:, None] * coords[idx]).sum(axis=0).astype(np.float32) / weights.sum()
