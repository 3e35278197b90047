"""Large inputs made from the real collection, for timing and memory figures only (issue #7).

A 100k-track index or feature store cannot be made from 100k real tracks on this machine (featurizing
them would take ~1.7 h of CPU, and there are 490 real clips). What the scale figures need is the *size*
and the *structure* of real data, so they repeat the real thing:

* :func:`tile_rows` repeats real latent vectors (or map coordinates) with a small seeded jitter, so
  copies are near-duplicates of real tracks but no two rows are equal (exact ties would make
  neighbour searches and k-means degenerate in ways real data is not);
* :func:`tile_bundle` makes a trained :class:`~musiclust.serving.bundle.ModelBundle` serve an index of ``n``
  tracks built that way (network, normaliser and centres unchanged);
* :func:`replicate_store` makes a feature store of ``copies`` x the tracks of a real store by
  hard-linking its shards' arrays under new track paths and shard keys, so a store of 100k track
  entries costs a few MB of JSON and no featurization; readers see 100k distinct tracks whose mel
  frames are real (and, being the same inodes, stay in the page cache).

Nothing here is used outside the benchmark and its tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from musiclust.store import shards

COPY_SEPARATOR = "~"  # "<id>~<copy number>": the map figure's convention (bench/mapsize.py)


def copies_needed(n: int, base: int) -> int:
    """How many copies of ``base`` rows make at least ``n`` rows."""
    if n < 1 or base < 1:
        raise ValueError(f"need n >= 1 and base >= 1, got n={n}, base={base}")
    return math.ceil(n / base)


def copy_number(n: int, base: int) -> np.ndarray:
    """``(n,)`` int: which copy each of ``n`` tiled rows belongs to (0 = the original rows)."""
    return np.repeat(np.arange(copies_needed(n, base)), base)[:n]


def tile_rows(x: np.ndarray, n: int, jitter: float, seed: int = 0, unit_norm: bool = False) -> np.ndarray:
    """``(n, D)`` float32: the rows of ``x`` repeated; copy 0 is ``x`` exactly, every later copy moved by
    seeded Gaussian noise of ``jitter`` x each column's standard deviation (a constant column gets no
    noise). With ``unit_norm`` every moved row is scaled back to the length of the row it copies, so a
    space of unit vectors (a model clustered by direction) stays one."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty (N, D) array, got shape {x.shape}")
    reps = copies_needed(n, len(x))
    out = np.tile(x, (reps, 1))[:n].astype(np.float32)  # (n, D)
    moved = copy_number(n, len(x)) > 0
    if moved.any() and jitter > 0:
        scale = x.std(axis=0).astype(np.float32)  # (D,)
        noise = np.random.default_rng(seed).standard_normal((int(moved.sum()), x.shape[1])).astype(np.float32)
        shifted = out[moved] + jitter * scale[None, :] * noise
        if unit_norm:
            length = np.linalg.norm(out[moved], axis=1, keepdims=True)
            shifted *= length / np.maximum(np.linalg.norm(shifted, axis=1, keepdims=True), 1e-12)
        out[moved] = shifted
    return out


def tiled_ids(ids: Sequence[str], n: int) -> list[str]:
    """``n`` unique ids: the originals, then ``<id>~1``, ``<id>~2``, ... for the copies."""
    copy = copy_number(n, len(ids))
    return [ids[i % len(ids)] if c == 0 else f"{ids[i % len(ids)]}{COPY_SEPARATOR}{c}" for i, c in enumerate(copy.tolist())]


def tile_bundle(bundle, n: int, seed: int = 0, space_jitter: float = 0.05, map_jitter: float = 0.01):
    """A copy of ``bundle`` whose collection (the index an upload is placed in) has ``n`` tracks.

    ``space`` is tiled with ``space_jitter`` x the per-dimension spread (unit vectors kept unit when the
    model clusters by direction), each copy keeps its original's cluster label, ``coords`` are tiled
    with ``map_jitter`` x the spread, and track entries are repeated with unique ids. The network,
    scaler and cluster centres are the trained ones, so placing an upload does exactly the work it
    does on a real collection of that size."""
    base = len(bundle.tracks)
    copy = copy_number(n, base)
    tracks = [
        dict(bundle.tracks[i % base], id=tid) if c else bundle.tracks[i % base]
        for i, (c, tid) in enumerate(zip(copy.tolist(), tiled_ids([t["id"] for t in bundle.tracks], n)))
    ]
    return dataclasses.replace(
        bundle,
        space=tile_rows(bundle.space, n, space_jitter, seed, unit_norm=bool(bundle.scaler.unit_norm)),
        labels=np.tile(bundle.labels, copies_needed(n, base))[:n].astype(np.int64),
        coords=tile_rows(bundle.coords, n, map_jitter, seed + 1),
        tracks=tracks,
        meta=dict(bundle.meta, n_tracks=n, tiled_from=base),
    )


def copy_path(path: str, copy: int) -> str:
    """The path copy ``copy`` of a track is recorded under (copy 0 keeps the real path). The file need not
    exist: a store-backed table only needs the frames, which stay the original's."""
    if copy == 0:
        return path
    p = Path(path)
    return str(p.parent / f"copy-{copy:05d}" / p.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a real copy costs disk, not correctness
        shutil.copyfile(src, dst)


def replicate_store(src: Path, dst: Path, copies: int) -> int:
    """Write at ``dst`` a store holding ``copies`` x every track of the store at ``src``; returns its track
    count. Copy 0 is the original tracks; copy c of a shard is a new shard (key: hash of its new paths)
    whose arrays are hard links to the original's and whose index lists the paths of :func:`copy_path`."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    src, dst = Path(src), Path(dst)
    shards.read_store_meta(src)  # fails clearly when src is not a store
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "store.json", dst / "store.json")
    total = 0
    for directory in shards.iter_shard_dirs(src):
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        for c in range(copies):
            tracks = [dict(t, path=copy_path(t["path"], c)) for t in index["tracks"]]
            key = shards.partition_key([t["path"] for t in tracks])
            out = dst / f"{shards.SHARD_PREFIX}{key}"
            out.mkdir()
            for name in shards.ARRAYS:
                _link_or_copy(directory / name, out / name)
            (out / "failed.json").write_text("{}", encoding="utf-8")
            (out / "index.json").write_text(json.dumps(dict(index, key=key, tracks=tracks)), encoding="utf-8")
            total += len(tracks)
    return total


def replicated_tracks(base: Sequence, copies: int) -> list:
    """``copies`` x the :class:`~musiclust.data.collection.Track` list ``base``, matching
    :func:`replicate_store`: copy c has the path of :func:`copy_path`, a unique id and a piece of its own
    (a copy is a different piece, so a validation split holds out copies as it would real pieces)."""
    out = []
    for c in range(copies):
        for t in base:
            if c == 0:
                out.append(t)
                continue
            out.append(dataclasses.replace(
                t, id=f"{t.id}{COPY_SEPARATOR}{c}", path=Path(copy_path(str(t.path), c)),
                piece_id=f"{t.piece}{COPY_SEPARATOR}{c}",
            ))
    return out


def store_bytes(root: Path) -> int:
    """Bytes of every file under ``root`` (hard links counted once per inode, as the disk holds them)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
