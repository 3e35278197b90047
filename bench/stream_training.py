"""Figure 9: peak memory of training from the sharded store as the library grows (1k, 10k, 100k tracks).

What ``python -m musiclust train --features STORE`` does up to and through the fit loop, in a fresh
process per size: the store-backed table (:func:`musiclust.store.stored_table.table_from_store`: every shard's
index read, mel frames left on disk), :func:`musiclust.pipeline.prepare` (validation split by piece,
the streaming mel normaliser over every training track, lyrics TF-IDF), and the ConvVAE's fit loop
(:func:`musiclust.models.training.fit`) reading each segment from the store as it is asked for. Resident
memory is sampled every 50 ms (and the kernel's own peak, ``ru_maxrss``, is reported beside it), with
the RSS and the time at the end of each phase.

Inputs: a store of 100 real clips of the default set (two real shards of 50, featurized here with the
Dask task body), replicated to N tracks with :func:`bench.replicas.replicate_store`: every
copy is a shard of its own with new track paths, ids and pieces, whose arrays are hard links to the
real shard's. Readers see N distinct tracks; the disk holds 100 tracks of frames (and, being the same
inodes, they stay in the page cache, which a real 100k store of ~63 GB would not: read time here is a
lower bound, memory is not affected). The lyrics are the real clips' lyrics, shared by their copies.

What is capped, and why: one epoch of 100k tracks is ~4,700 batches (~4 min of this CPU per size), and
every batch holds the same memory, so the fit loop is stopped after ``max_batches`` batches through its
own cancel hook (``should_stop``; the model is then restored, as on a user's cancel). Everything before
the fit loop runs in full at every N. Not measured here: what comes after the fit loop (embedding every
track, clustering and the map: figure 8 measures the index at 100k).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bench.common import Log, goal, ratio
from musiclust.models.registry import DEFAULT_MODEL  # the model trained: the one the app serves first

BASE_TRACKS = 100
SHARD_TRACKS = 50
FLAT_TOLERANCE = 1.25  # "flat": the 100k peak within 25 % of the 1k peak


# --- in the benchmark worker process ------------------------------------------------------------------

def _nbytes(matrix) -> int:
    """Bytes held by a dense array or a SciPy CSR matrix (its data, column indices and row pointers)."""
    if hasattr(matrix, "indptr"):
        return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)
    return int(matrix.nbytes)


def measure(task: dict, ready: Callable[[], None]) -> dict:
    from bench.memory import PeakRSS, max_rss_mb, rss_mb
    from bench.replicas import replicated_tracks
    from musiclust.data.collection import Collection, load_collection
    from musiclust.errors import TrainingCancelled
    from musiclust.models import build_model
    from musiclust.pipeline import Settings, model_config, prepare
    from musiclust.store.stored_table import table_from_store
    from musiclust.models.training import TrainConfig, fit

    by_id = load_collection(task["data"]).by_id()
    base = [by_id[i] for i in task["base_ids"]]
    ready()
    phases: dict = {}
    start_rss = rss_mb()

    def mark(name: str, t: float) -> None:
        phases[name] = {"seconds": time.perf_counter() - t, "rss_mb": rss_mb()}

    batches = {"n": 0}

    def stop() -> bool:
        batches["n"] += 1
        return batches["n"] > task["max_batches"]

    with PeakRSS() as mem:
        t = time.perf_counter()
        collection = Collection("bench-replicated", replicated_tracks(base, task["copies"]))
        table = table_from_store(collection, Path(task["store"]))
        mark("table", t)
        t = time.perf_counter()
        prep = prepare(table, Settings(seed=0, epochs=1))
        mark("prepare", t)
        t = time.perf_counter()
        model = build_model(DEFAULT_MODEL, model_config(DEFAULT_MODEL, prep), seed=0)
        train, val = prep.data(prep.train_rows), prep.data(prep.val_rows)
        cancelled = False
        try:
            fit(model, train, val, TrainConfig(epochs=1, seed=0), should_stop=stop)
        except TrainingCancelled:
            cancelled = True
        mark("fit", t)
    return {
        "tracks": len(table),
        "skipped": len(table.skipped),
        "train_tracks": int(len(prep.train_rows)),
        "val_tracks": int(len(prep.val_rows)),
        "batches": min(batches["n"], task["max_batches"]),
        "capped": cancelled,
        "fit_seconds_per_batch": phases["fit"]["seconds"] / max(1, min(batches["n"], task["max_batches"])),
        "phases": phases,
        "start_rss_mb": start_rss,
        "peak_rss_mb": mem.peak_mb,
        "peak_pss_mb": mem.peak_pss_mb,
        "max_rss_mb": max_rss_mb(),
        "lyrics_matrix_mb": _nbytes(prep.lyrics) / 2**20,
        "lyrics_copies_mb": (_nbytes(train.lyrics) + _nbytes(val.lyrics)) / 2**20 if train.lyrics is not None else 0.0,
        "prepare_ms_per_train_track": 1000 * phases["prepare"]["seconds"] / len(prep.train_rows),  # normaliser pass + TF-IDF
    }


# --- in the benchmark's own process ------------------------------------------------------------------
def build_base_store(data: str, root: Path, base_tracks: int, shard_tracks: int) -> list[str]:
    """Featurize ``base_tracks`` real tracks of ``data`` (spread over its groups) into a store of shards of
    ``shard_tracks``, with the Dask task body in this process; returns their ids in store order."""
    from musiclust.store import shards
    from bench.common import spread
    from musiclust.config import FeatureConfig
    from musiclust.data.collection import load_collection
    from musiclust.store.distributed import featurize_partition

    tracks = spread(load_collection(data).tracks, base_tracks)
    cfg = FeatureConfig()
    shards.init_store(root, cfg)
    stamps = [shards.FileStamp.of(t.path) for t in tracks]
    for key, part in shards.partitions(stamps, shard_tracks):
        featurize_partition(str(root), cfg.to_dict(), key, [(s.path, s.size, s.mtime_ns) for s in part])
    return [t.id for t in tracks]


def run(data: str, sizes: Sequence[int], log: Log, max_batches: int = 40, base_tracks: int = BASE_TRACKS,
        shard_tracks: int = SHARD_TRACKS) -> dict:
    from bench.common import run_workers
    from bench.replicas import copies_needed, replicate_store

    sizes = sorted(sizes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-stream-") as tmp:
        tmp = Path(tmp)
        log(f"stream: featurizing {base_tracks} real tracks into a base store")
        ids = build_base_store(data, tmp / "base", base_tracks, shard_tracks)
        for n in sizes:
            copies = copies_needed(n, len(ids))
            store = tmp / f"store-{n}"
            t = time.perf_counter()
            total = replicate_store(tmp / "base", store, copies)
            made = time.perf_counter() - t
            log(f"stream: {total:,} tracks ({copies} copies of {len(ids)}): table, prepare, fit loop capped at {max_batches} batches")
            r = run_workers([{"kind": "stream_train", "data": data, "store": str(store), "base_ids": ids, "copies": copies,
                              "max_batches": max_batches}])[0]
            shutil.rmtree(store, ignore_errors=True)
            rows.append({"n": total, "copies": copies, "store_build_s": made, **r})
    small, large = rows[0], rows[-1]
    slope = float(np.polyfit([r["n"] for r in rows], [r["peak_rss_mb"] for r in rows], 1)[0]) if len(rows) > 1 else None
    growth = ratio(large["peak_rss_mb"], small["peak_rss_mb"])
    return {
        "sizes": [r["n"] for r in rows],
        "base_tracks": len(ids),
        "shard_tracks": shard_tracks,
        "max_batches": max_batches,
        "model": DEFAULT_MODEL,
        "rows": rows,
        "peak_mb_per_1k_tracks": None if slope is None else 1000 * slope,
        "ratios": {"peak_largest_vs_smallest": growth},
        "goals": {"flat": goal(f"peak memory flat from {small['n']:,} to {large['n']:,} tracks (within {FLAT_TOLERANCE}x; "
                               f"{growth:.2f}x)" if growth else "peak memory flat (one size only: not judged)",
                               None if growth is None or len(rows) < 2 else growth <= FLAT_TOLERANCE)},
    }
