"""Training from the sharded store with memory that does not grow with the library.

The fit loop (:func:`musiclust.models.training.fit`) asks :class:`~musiclust.models.training.SegmentData` for
``mel_segments[track][segment]`` one batch at a time; it never needs every segment at once. So the
smallest honest streaming design is not a second training loop but a lazy ``Sequence``:
:class:`LazySegments` holds, per track, only where its frames are (shard, row, frame count), and
``mel_segments[i][s]`` reads that one 128-frame segment from the store and standardises it on
access. The fit loop, its seeded sampling and its batches are unchanged, so for the same
normaliser, seed and tracks a streamed run computes *bit-identical* batches and weights to the
in-memory run (``tests/test_distributed.py`` checks the loss history).

What differs: :func:`fit_normalizer` computes each band's mean and standard deviation in one
streaming pass (float64 running moments, merged per track), where
:meth:`musiclust.store.table.MelNormalizer.fit` concatenates every frame and reduces in float32. The two
agree to ~1e-6 relative, so the normalised inputs, and so a trained model, differ in the last bits.

Memory: O(N) small integers for the index, plus one batch of segments (64 x 128 x 128 float32 = 4 MB)
at a time. A torch ``DataLoader`` with worker processes would add prefetching, but a segment read is
one positional read from the page cache (~tens of µs) against a training step of ~50 ms, so it would
only add processes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from musiclust.store.table import MelNormalizer
from musiclust.errors import ParameterError


def is_lazy(table) -> bool:
    """Whether a :class:`~musiclust.store.table.TrackTable`'s mels stay in a store (see :class:`musiclust.store.stored_table.StoreMels`)."""
    return bool(getattr(table.mels, "lazy", False))


def fit_normalizer(mels, rows: Sequence[int]) -> MelNormalizer:
    """Per-band mean and std over every frame of tracks ``rows``, reading one track at a time.

    Chan et al.'s pairwise merge of (count, mean, M2) in float64: stable, and exact up to rounding.
    """
    count, mean, m2 = 0, None, None
    for i in rows:
        frames = np.asarray(mels.read_frames(int(i), 0, mels.frames(int(i))), np.float64)  # (T, n_mels)
        n = len(frames)
        m = frames.mean(axis=0)
        d2 = ((frames - m) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n, m, d2
            continue
        delta = m - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + d2 + delta**2 * (count * n / total)
        count = total
    if mean is None:
        raise ParameterError("no training tracks to fit the mel normalisation on")
    std = np.sqrt(m2 / count)
    return MelNormalizer(mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))


class TrackSegments:
    """One track's standardised segments ``(n_segments, n_mels, frames)``, read on access.

    Looks like the array :func:`musiclust.store.table.track_segments` returns to everything the fit loop
    does with it (``len``, ``shape``, ``ndim``, ``[s]``); ``np.asarray`` materialises the track (the
    embedding and baseline steps do that, one track at a time).
    """

    ndim = 3
    __slots__ = ("mels", "row", "normalizer", "width", "total", "count")  # ~100 bytes a track: N of them are held

    def __init__(self, mels, row: int, normalizer: MelNormalizer, frames: int):
        self.mels, self.row, self.normalizer, self.width = mels, int(row), normalizer, frames
        self.total = mels.frames(self.row)
        self.count = max(1, self.total // frames)  # as features.segments: a short track is tiled into one

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.count, len(self.normalizer.mean), self.width)

    def __getitem__(self, s) -> np.ndarray:
        if not isinstance(s, (int, np.integer)):
            return np.asarray(self)[s]
        s = int(s) + self.count if s < 0 else int(s)
        if not 0 <= s < self.count:
            raise IndexError(f"segment {s} of a track with {self.count}")
        if self.total < self.width:  # tiled, exactly as features.segments does it
            mel = self.mels.read_frames(self.row, 0, self.total).T  # (n_mels, T)
            mel = np.tile(mel, (1, -(-self.width // self.total)))[:, : self.width]
        else:
            mel = self.mels.read_frames(self.row, s * self.width, (s + 1) * self.width).T  # (n_mels, frames) view
        return np.ascontiguousarray(self.normalizer(mel))  # elementwise: same values as normalising the whole track

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[s] for s in range(self.count)])  # (n_segments, n_mels, frames)
        return out if dtype is None else out.astype(dtype)

    def reshape(self, *shape) -> np.ndarray:
        return np.asarray(self).reshape(*shape)


class LazySegments(Sequence):
    """``segments[i]``: a :class:`TrackSegments` of track i of a store-backed table."""

    def __init__(self, mels, normalizer: MelNormalizer, frames: int):
        self.mels, self.normalizer, self.frames = mels, normalizer, frames

    def __len__(self) -> int:
        return len(self.mels)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return TrackSegments(self.mels, int(i), self.normalizer, self.frames)


def prepare_segments(table, train_rows: Sequence[int]) -> tuple[MelNormalizer, LazySegments]:
    """What :func:`musiclust.pipeline.prepare` makes for an in-memory table, for a store-backed one."""
    normalizer = fit_normalizer(table.mels, train_rows)
    return normalizer, LazySegments(table.mels, normalizer, table.config.segment_frames)
