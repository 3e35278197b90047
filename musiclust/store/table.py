"""From a collection to model-ready arrays: featurized tracks, mel normalisation, segments, splits.

This is the one place where tracks, their features and their lyrics are lined up row by row, so
every model and baseline sees the same tracks in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from musiclust.config import FeatureConfig
from musiclust.data.collection import Collection, Track
from musiclust.paths import FEATURE_CACHE
from musiclust.errors import DataError, ParameterError
from musiclust.features.mel import FeatureStore, segments

DEFAULT_CACHE = FEATURE_CACHE


@dataclass
class TrackTable:
    """Featurized tracks in a fixed order; ``skipped`` says which files could not be used and why."""

    tracks: list[Track]
    mels: list[np.ndarray]  # per track (n_mels, T_i) float32 dB
    mfcc_stats: np.ndarray  # (N, 4 * n_mfcc)
    durations: np.ndarray  # (N,) seconds
    config: FeatureConfig
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tracks]

    @property
    def groups(self) -> list[Optional[str]]:
        return [t.group for t in self.tracks]

    @property
    def lyrics(self) -> list[Optional[str]]:
        return [t.lyrics for t in self.tracks]

    def fingerprint(self) -> str:
        """The featurized tracks' membership, as :meth:`Collection.fingerprint` defines it (for metadata)."""
        return Collection("", self.tracks).fingerprint()

    def label_names(self) -> list[str]:
        return sorted({g for g in self.groups if g})

    def label_indices(self) -> np.ndarray:
        """Group index per track, -1 where the group is unknown."""
        names = {g: i for i, g in enumerate(self.label_names())}
        return np.array([names.get(g, -1) if g else -1 for g in self.groups], dtype=np.int64)


def featurize(
    collection: Collection,
    config: FeatureConfig = FeatureConfig(),
    cache_dir: Path = DEFAULT_CACHE,
    jobs: int = 2,
    progress: Optional[Callable[[int, int], None]] = None,
) -> TrackTable:
    """Features of every track (cached on disk); unusable files are skipped with their reason."""
    store = FeatureStore(cache_dir, config)
    report = store.get_many([t.path for t in collection.tracks], jobs=jobs, progress=progress)
    kept = [t for t in collection.tracks if str(t.path) in report.features]
    if len(kept) < 2:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in list(report.failed.items())[:5])
        raise DataError(f"only {len(kept)} of {len(collection)} tracks could be featurized ({reasons})")
    feats = [report.features[str(t.path)] for t in kept]
    return TrackTable(
        tracks=kept,
        mels=[f.mel_db for f in feats],
        mfcc_stats=np.stack([f.mfcc_stats for f in feats]),
        durations=np.array([f.duration for f in feats], dtype=np.float32),
        config=config,
        skipped={**collection.skipped, **report.failed},
    )


@dataclass
class MelNormalizer:
    """Per-mel-band mean and standard deviation over all frames of the training tracks.

    Standardising each band puts model inputs at ~N(0, 1), so a unit-variance Gaussian decoder
    fits every band and quiet high bands are not drowned by loud low ones.
    """

    mean: np.ndarray  # (n_mels,)
    std: np.ndarray  # (n_mels,)

    @classmethod
    def fit(cls, mels: list[np.ndarray]) -> "MelNormalizer":
        frames = np.concatenate(mels, axis=1)  # (n_mels, sum T)
        std = frames.std(axis=1)
        return cls(frames.mean(axis=1).astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))

    def __call__(self, mel_db: np.ndarray) -> np.ndarray:
        """``(..., n_mels, T)`` dB -> standardised."""
        return ((mel_db - self.mean[:, None]) / self.std[:, None]).astype(np.float32)

    def invert(self, standardised: np.ndarray) -> np.ndarray:
        """Back to dB, for showing and sonifying reconstructions."""
        return (standardised * self.std[:, None] + self.mean[:, None]).astype(np.float32)


def track_segments(mel_db: np.ndarray, normalizer: MelNormalizer, frames: int) -> np.ndarray:
    """One track's standardised model input: ``(n_segments, n_mels, frames)``."""
    return segments(normalizer(mel_db), frames)


def split_by_piece(tracks: list[Track], val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices, holding out whole pieces (no piece on both sides).

    Pieces are drawn per group so that every group is represented in validation.
    """
    if not 0 < val_fraction < 1:
        raise ParameterError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[str]] = {}
    for t in tracks:
        pieces = by_group.setdefault(t.group or "", [])
        if t.piece not in pieces:
            pieces.append(t.piece)
    held: set[str] = set()
    for group in sorted(by_group):
        pieces = sorted(by_group[group])
        n_val = int(round(len(pieces) * val_fraction))
        if n_val and len(pieces) > 1:
            held.update(rng.choice(pieces, size=min(n_val, len(pieces) - 1), replace=False).tolist())
    is_val = np.array([t.piece in held for t in tracks])
    if is_val.all() or not is_val.any():
        raise DataError("too few pieces to hold out a validation split; add tracks")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
