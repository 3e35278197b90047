"""Baselines scored on the same tracks, split and seeds as the VAEs, so their numbers mean something.

Each baseline yields a track embedding (or, for ``random``, labels alone); clustering and scoring
then run exactly as for the models (see :mod:`musiclust.analysis.evaluation`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn.decomposition import PCA

from musiclust.store.table import MelNormalizer, TrackTable, track_segments

BASELINES = ("random", "pca_kmeans", "mfcc_kmeans", "tfidf_kmeans", "musicnn_kmeans")


def random_labels(n: int, k: int, seed: int) -> np.ndarray:
    """Uniformly random cluster labels: the floor every score must clear."""
    return np.random.default_rng(seed).integers(0, k, size=n)


def pca_embedding(
    table: TrackTable, normalizer: MelNormalizer, train_rows: np.ndarray, dim: int, seed: int, segments: Optional[list] = None
) -> np.ndarray:
    """PCA (``dim`` components, the VAEs' latent size) of the same flattened, standardised segments the
    BasicVAE sees, fitted on the training tracks; a track is the mean of its segments' projections.

    ``segments`` are those segments when the caller has them already (``Prepared.segments``): rebuilding
    them, plus PCA's own centred copy, added ~700 MB to a retrain's peak memory for the default set."""
    frames = table.config.segment_frames
    if segments is None:
        segments = [track_segments(m, normalizer, frames) for m in table.mels]
    per_track = [s.reshape(-1, table.config.n_mels * frames) for s in segments]
    fit_on = np.concatenate([per_track[i] for i in train_rows])  # (S, n_mels * frames), a copy PCA may centre in place
    pca = PCA(n_components=min(dim, *fit_on.shape), svd_solver="randomized", random_state=seed, copy=False).fit(fit_on)
    del fit_on
    return np.stack([pca.transform(s).mean(axis=0) for s in per_track]).astype(np.float32)  # (N, dim)


def mfcc_embedding(table: TrackTable) -> np.ndarray:
    """Mean and std of MFCCs and deltas per track: the classic timbre summary."""
    return table.mfcc_stats


def musicnn_track_embedding(pretrained: Sequence[np.ndarray]) -> np.ndarray:
    """The pretrained row a user could pick instead of a learned model: per track the mean of its
    segments' MusiCNN penultimate layer (the first 200 columns of the ``(S_i, 250)`` vectors of
    :mod:`musiclust.pretrained.store`), ``(N, 200)``."""
    return np.stack([np.asarray(p)[:, :200].mean(axis=0) for p in pretrained]).astype(np.float32)


def musicnn_space(pretrained: Sequence[np.ndarray]) -> np.ndarray:
    """The space ``musicnn_kmeans`` clusters in: each track's mean penultimate scaled to unit length
    (k-means on it is spherical k-means). Chosen on the real set's selection half (k = 8, 3 seeds),
    NMI / ARI: unit length 0.321 / 0.154, z-scored 0.300 / 0.119, raw 0.292 / 0.145, z-scored then
    unit length 0.312 / 0.127 (``docs/results/musicnn_real_select.json``)."""
    x = musicnn_track_embedding(pretrained)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
