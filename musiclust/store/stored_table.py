"""Training from the feature store: a :class:`~musiclust.store.table.TrackTable` whose mels stay on disk.

The table holds ``(shard, row)`` pairs and reads a track's frames from its shard when asked, so a
collection far larger than memory can be trained on (see :mod:`musiclust.store.streaming`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from musiclust.config import FeatureConfig
from musiclust.errors import DataError
from musiclust.store.shards import FileStamp, Shard, open_store


class StoreMels(Sequence):
    """``mels[i]``: the ``(n_mels, T_i)`` float32 dB log-mel of track i, read from its shard on access.

    Drop-in for :attr:`musiclust.store.table.TrackTable.mels` (a list there); holds only ``(shard, row)``
    pairs, so the table of a million tracks costs a few tens of MB, not the features themselves.
    """

    lazy = True

    def __init__(self, shards: Sequence[Shard], rows: Sequence[tuple[int, int]]):
        self.shards = shards
        self.rows = np.asarray(rows, np.int64).reshape(-1, 2)  # (N, 2): shard index, row

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s, r = self.rows[i]
        return self.shards[s].mel_db(int(r))

    def frames(self, i: int) -> int:
        s, r = self.rows[i]
        return self.shards[s].frames(int(r))

    def read_frames(self, i: int, start: int, stop: int) -> np.ndarray:
        """``(stop - start, n_mels)`` frames of track i (frame-major, as stored)."""
        s, r = self.rows[i]
        return self.shards[s].read_frames(int(r), start, stop)


def table_from_store(collection, root: Path, config: Optional[FeatureConfig] = None):
    """A :class:`~musiclust.store.table.TrackTable` of ``collection`` whose mels stay in the store.

    Tracks of the collection that are not in the store (never featurized, or changed since) are
    skipped with the reason; files the store recorded as failed are skipped with their recorded reason.
    """
    from musiclust.store.table import TrackTable

    stored, catalog = open_store(Path(root), config)
    kept, rows, skipped = [], [], dict(collection.skipped)
    for name, why in catalog.damaged.items():
        skipped[f"{root}/{name}"] = why
    for track in collection.tracks:
        key = str(track.path)
        hit = catalog.where.get(key)
        if hit is None:
            bad = catalog.failed.get(key)
            skipped[key] = bad.get("reason", "failed") if bad else "not in the feature store (run `python -m musiclust features` on it)"
            continue
        record = catalog.shards[hit[0]].tracks[hit[1]]
        try:
            if FileStamp.of(track.path) != FileStamp(key, record.get("size"), record.get("mtime_ns")):
                skipped[key] = "changed since it was featurized (run `python -m musiclust features` again)"
                continue
        except OSError:
            pass  # the audio need not be on this machine to train from its features
        kept.append(track)
        rows.append(hit)
    if len(kept) < 2:
        raise DataError(f"only {len(kept)} of {len(collection)} tracks are in the feature store {root}")
    mfcc = np.stack([catalog.shards[s].mfcc[r] for s, r in rows])  # (N, 4 * n_mfcc)
    durations = np.array([catalog.shards[s].durations[r] for s, r in rows], np.float32)
    return TrackTable(tracks=kept, mels=StoreMels(catalog.shards, rows), mfcc_stats=mfcc, durations=durations, config=stored, skipped=skipped)
