"""Baselines scored on the same tracks, split and seeds as the VAEs, so their numbers mean something.

Each baseline yields a track embedding (or, for ``random``, labels alone); clustering and scoring
then run exactly as for the models (see :mod:`musiclust.analysis.evaluation`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from musiclust.analysis.clustering import Standardizer
from musiclust.analysis.reconstruction import mean_reconstruction_mse_db
from musiclust.determinism import reproducible
from musiclust.models.hybrid import MIN_LYRIC_TRACKS, HybridFusion
from musiclust.store.table import MelNormalizer, TrackTable, track_segments

BASELINES = ("random", "pca_kmeans", "mfcc_kmeans", "mfcc_lyrics_kmeans", "tfidf_kmeans", "musicnn_kmeans")
# Baselines that read a pretrained network's vectors: extracting them costs seconds of CPU per track the
# first time, so a retrain scores them only when it extracted the vectors anyway (an opt-in model).
PRETRAINED_BASELINES = ("musicnn_kmeans",)


def random_labels(n: int, k: int, seed: int) -> np.ndarray:
    """Uniformly random cluster labels: the floor every score must clear."""
    return np.random.default_rng(seed).integers(0, k, size=n)


class SegmentPCA:
    """PCA of the flattened, standardised segments the BasicVAE sees (sklearn's randomized solver).

    It is both a clustering baseline (a track is the mean of its segments' projections) and the
    reconstruction reference: a VAE whose latent has ``n_components`` dimensions should reconstruct the
    held-out tracks at least as well as this linear code of the same size. A trained model's checkpoint
    carries the one fitted beside it (``mean_`` and ``components_``), so the reconstructions page shows it
    without scikit-learn or the collection's segments.
    """

    def __init__(self, n_components: int, seed: int = 0):
        self.n_components = n_components
        self.seed = seed

    @reproducible()  # randomized PCA's BLAS pinned: one and two OpenBLAS threads gave other embeddings
    def fit(self, segments: Sequence[np.ndarray]) -> "SegmentPCA":
        """Fit on the training tracks' ``(S_i, n_mels, frames)`` standardised segments."""
        from sklearn.decomposition import PCA  # here: a checkpoint's saved reference needs no scikit-learn

        fit_on = np.concatenate([s.reshape(len(s), -1) for s in segments])  # (S, n_mels * frames), a copy PCA may centre in place
        dim = min(self.n_components, *fit_on.shape)
        self.pca_ = PCA(n_components=dim, svd_solver="randomized", random_state=self.seed, copy=False).fit(fit_on)
        self.mean_ = self.pca_.mean_.astype(np.float32)  # (n_mels * frames,)
        self.components_ = self.pca_.components_.astype(np.float32)  # (n_components, n_mels * frames)
        self.variance_ = self.pca_.explained_variance_.astype(np.float32)  # (n_components,): BasicVAE's linear code
        return self

    @classmethod
    def from_arrays(cls, mean: np.ndarray, components: np.ndarray) -> "SegmentPCA":
        """A fitted PCA from its saved ``mean_`` and ``components_`` (what a checkpoint keeps)."""
        pca = cls(len(components))
        pca.mean_, pca.components_ = np.asarray(mean, np.float32), np.asarray(components, np.float32)
        return pca

    def transform(self, segs: np.ndarray) -> np.ndarray:
        """``(S, n_mels, frames)`` -> ``(S, n_components)`` projections."""
        flat = segs.reshape(len(segs), -1)
        if hasattr(self, "pca_"):  # fitted here: sklearn's own arithmetic, as the baseline has always used
            return self.pca_.transform(flat)
        return (flat - self.mean_) @ self.components_.T

    def reconstruct(self, segs: np.ndarray) -> np.ndarray:
        """``(S, n_mels, frames)`` -> its projection back in segment space, still standardised."""
        codes = self.transform(segs)
        flat = self.pca_.inverse_transform(codes) if hasattr(self, "pca_") else codes @ self.components_ + self.mean_
        return flat.reshape(segs.shape).astype(np.float32)


@reproducible()
def pca_embedding(
    table: TrackTable,
    normalizer: MelNormalizer,
    train_rows: np.ndarray,
    dim: int,
    seed: int,
    segments: Optional[list] = None,
    pca: Optional[SegmentPCA] = None,
) -> np.ndarray:
    """PCA (``dim`` components, the VAEs' latent size) of the same flattened, standardised segments the
    BasicVAE sees, fitted on the training tracks; a track is the mean of its segments' projections.

    ``segments`` are those segments when the caller has them already (``Prepared.segments``): rebuilding
    them, plus PCA's own centred copy, added ~700 MB to a retrain's peak memory for the default set.
    ``pca`` is a :class:`SegmentPCA` already fitted that way (it is then reused, not refitted)."""
    segments = _segments(table, normalizer, segments)
    if pca is None:
        pca = SegmentPCA(dim, seed).fit([segments[i] for i in train_rows])
    return np.stack([pca.transform(s).mean(axis=0) for s in segments]).astype(np.float32)  # (N, dim)


def pca_reconstruction_mse_db(
    pca: SegmentPCA, table: TrackTable, normalizer: MelNormalizer, rows: np.ndarray, segments: Optional[list] = None
) -> float:
    """PCA's reconstruction error (dB²) over ``rows`` (the held-out tracks), scored exactly as the models'
    (:func:`musiclust.pipeline.reconstruction_error`): whole segments, de-standardised, mean over tracks."""
    segments = _segments(table, normalizer, segments)

    def pairs():
        for i in rows:
            recon = pca.reconstruct(segments[i])  # (S, n_mels, frames) standardised
            yield table.mels[i], normalizer.invert(np.concatenate(list(recon), axis=1))

    return mean_reconstruction_mse_db(pairs())


def _segments(table: TrackTable, normalizer: MelNormalizer, segments: Optional[list]) -> list:
    if segments is not None:
        return segments
    return [track_segments(m, normalizer, table.config.segment_frames) for m in table.mels]


def mfcc_lyrics_embedding(table: TrackTable, tfidf, has_lyrics: np.ndarray, weight: float, missing_lyrics: str,
                          n_components: int, seed: int) -> Optional[np.ndarray]:
    """What the fused models see, without learning: the z-scored MFCC statistics joined with the lyrics
    exactly as ``conv_vae_fusion`` joins its latent (:class:`~musiclust.models.hybrid.HybridFusion`:
    same weight, rank and treatment of a track without lyrics, "no words" axis included). ``None`` when
    fewer than :data:`~musiclust.models.hybrid.MIN_LYRIC_TRACKS` tracks have lyrics: the fused model is
    then its audio model alone, and so is this (``mfcc_kmeans``)."""
    if int(np.count_nonzero(has_lyrics)) < MIN_LYRIC_TRACKS:
        return None
    mfcc = mfcc_embedding(table)
    audio = Standardizer.fit(mfcc)(mfcc)  # (N, d) MFCC statistics in comparable units, as mfcc_kmeans clusters them
    fusion = HybridFusion.fit(audio, tfidf, has_lyrics, weight=weight, n_components=n_components, seed=seed,
                              missing_lyrics=missing_lyrics)
    return fusion(audio, tfidf, has_lyrics)  # (N, d + k [+ 1]); not z-scored again (that would undo the weight)


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
