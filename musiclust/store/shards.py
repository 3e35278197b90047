"""The sharded feature store: one directory of plain ``.npy`` arrays + JSON per partition of tracks.

Written by :mod:`musiclust.store.distributed` (one shard per Dask task, so no file is ever written by two
workers), read by :mod:`musiclust.store.streaming` and :mod:`musiclust.store.stored_table` (training from the store).

Layout (``STORE`` is any directory every worker can reach, e.g. an NFS mount)::

    STORE/store.json                 format, version, the FeatureConfig every shard was made with
    STORE/shard-<key>/mel.npy        (sum of T_i, n_mels) float32 dB: all tracks' frames, frame-major
                     offsets.npy     (n + 1,) int64: track i is rows offsets[i]:offsets[i + 1] of mel.npy
                     mfcc.npy        (n, 4 * n_mfcc) float32 MFCC statistics
                     durations.npy   (n,) float64 seconds featurized
                     index.json      per track: path, sha256, size, mtime_ns, start, stop; shard metadata
                     failed.json     path -> {reason, size, mtime_ns}: files that could not be featurized

Why this format, not Parquet or Zarr:

* A track is one *contiguous* run of bytes in ``mel.npy`` (frame-major), so reading it, or one 128-frame
  model segment of it, is a single positional read — or a slice of ``np.load(path, mmap_mode="r")``.
  Parquet stores columns of scalars (a 2-D array per row becomes nested lists, decoded whole per row
  group), and Zarr would add a dependency and a file per chunk on shared storage for what is, here,
  an append-once array per shard.
* ``.npy`` + JSON load without pickle (``allow_pickle=False``), need nothing beyond numpy on any
  worker or reader, and are readable by any numpy user.
* A shard is written into a private temporary directory, every file fsynced, then renamed into place
  in one atomic ``rename``: a killed worker leaves a ``.tmp-*`` directory that no reader looks at (the
  next run removes it), never half a shard; a retried task renames its own complete copy, or finds the
  first copy already there and drops its own.

The shard key is a hash of the partition's sorted paths, and partitions are consecutive runs of the
sorted list of paths still to do, so an interrupted run that is started again maps its remaining
tracks onto exactly the shards it did not finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from musiclust.config import FeatureConfig
from musiclust.store.durable import fsync_dir
from musiclust.errors import DataError, ParameterError

FORMAT = "musiclust-feature-shards"
VERSION = 1
SHARD_PREFIX = "shard-"
TMP_PREFIX = ".tmp-"
BAD_PREFIX = ".damaged-"
ARRAYS = ("mel.npy", "offsets.npy", "mfcc.npy", "durations.npy")


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file's version without reading it: path, size and modification time.

    A rerun skips a path whose stamp matches a shard's record (hashing a million files on the client to
    find out would read the whole library); the worker that featurizes a file records its SHA-256.
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "FileStamp":
        st = os.stat(path)
        return cls(str(path), int(st.st_size), int(st.st_mtime_ns))


def partition_key(paths: Sequence[str]) -> str:
    """Stable name of a partition: the first 16 hex digits of the SHA-256 of its sorted paths."""
    digest = hashlib.sha256()
    for p in sorted(paths):
        digest.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:16]


def partitions(stamps: Sequence[FileStamp], size: int) -> list[tuple[str, list[FileStamp]]]:
    """Consecutive runs of ``size`` stamps in path order, each with its key.

    Deterministic: the same paths to do give the same partitions, and removing whole finished
    partitions from the list leaves the others unchanged (only the last partition can be short).
    """
    if size < 1:
        raise ParameterError(f"partition size must be at least 1, got {size}")
    ordered = sorted(stamps, key=lambda s: s.path)
    out = []
    for start in range(0, len(ordered), size):
        part = ordered[start : start + size]
        out.append((partition_key([s.path for s in part]), part))
    return out


# --- writing ---------------------------------------------------------------------------------------
def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _save_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=0, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())


def init_store(root: Path, config: FeatureConfig) -> None:
    """Create ``root`` (or check it) and record the feature parameters its shards are made with."""
    root = Path(root)
    meta_path = root / "store.json"
    if meta_path.is_file():
        meta = read_store_meta(root)
        if meta["feature_config"] != config.to_dict():
            raise DataError(
                f"{root} holds features made with other parameters (fingerprint {meta.get('fingerprint')}); "
                f"use another --store for fingerprint {config.fingerprint()}"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}store-{os.getpid()}.json"
    _save_json(tmp, {"format": FORMAT, "version": VERSION, "fingerprint": config.fingerprint(), "feature_config": config.to_dict()})
    os.replace(tmp, meta_path)
    fsync_dir(root)


def read_store_meta(root: Path) -> dict:
    path = Path(root) / "store.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{root} is not a musiclust feature store (no store.json): run `python -m musiclust features` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION or not isinstance(meta.get("feature_config"), dict):
        raise DataError(f"{path} is not a musiclust feature store of version {VERSION}")
    return meta


@dataclass
class ShardContent:
    """What a worker made for one partition, before it is written."""

    mels: list = field(default_factory=list)  # per track (n_mels, T_i) float32
    mfcc: list = field(default_factory=list)  # per track (4 * n_mfcc,) float32
    durations: list = field(default_factory=list)
    tracks: list = field(default_factory=list)  # dicts: path, sha256, size, mtime_ns
    failed: dict = field(default_factory=dict)  # path -> {reason, size, mtime_ns}


def write_shard(root: Path, key: str, content: ShardContent, config: FeatureConfig, meta: Optional[dict] = None) -> Path:
    """Write one shard atomically; returns its directory.

    If a complete shard of this key is already there (a task that ran twice: a retry after a lost
    worker, or a speculative duplicate), that one is kept and this copy dropped: both hold the same
    partition's features.
    """
    root = Path(root)
    final = root / f"{SHARD_PREFIX}{key}"
    tmp = root / f"{TMP_PREFIX}{SHARD_PREFIX}{key}-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir(parents=True)
    try:
        lengths = [m.shape[1] for m in content.mels]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if content.mels:
            # (sum T, n_mels), C order: concatenating transposed views would otherwise keep Fortran order
            mel = np.ascontiguousarray(np.concatenate([m.T for m in content.mels], axis=0), dtype=np.float32)
        else:
            mel = np.zeros((0, config.n_mels), np.float32)
        mfcc = np.stack(content.mfcc).astype(np.float32) if content.mfcc else np.zeros((0, 4 * config.n_mfcc), np.float32)
        _save_npy(tmp / "mel.npy", mel)
        _save_npy(tmp / "offsets.npy", offsets)
        _save_npy(tmp / "mfcc.npy", mfcc)
        _save_npy(tmp / "durations.npy", np.asarray(content.durations, np.float64))
        tracks = [{**t, "start": int(offsets[i]), "stop": int(offsets[i + 1])} for i, t in enumerate(content.tracks)]
        _save_json(tmp / "failed.json", content.failed)
        # index.json last: its presence is what makes a directory a shard (the rename makes it visible at all)
        _save_json(tmp / "index.json", {
            "format": FORMAT, "version": VERSION, "key": key, "fingerprint": config.fingerprint(),
            "n_mels": config.n_mels, "created_ns": time.time_ns(), **(meta or {}), "tracks": tracks,
        })
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if (final / "index.json").is_file():  # the same partition finished elsewhere first
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            raise
        fsync_dir(root)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(root: Path) -> int:
    """Remove temporary directories of killed writers; returns how many. Call only while no run writes."""
    count = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for entry in root.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            count += 1
    return count


# --- reading ---------------------------------------------------------------------------------------
class Shard:
    """One complete shard: its small arrays and index in memory, mel frames read on demand.

    Mel frames are read with positional reads of ``mel.npy``'s data region, not through a memory map:
    pages of a map that were touched count in the reader's resident memory until it is unmapped, so a
    training run mapping every shard would look (and, under memory pressure, behave) as if it held the
    whole store. A read goes through the page cache and leaves nothing behind in the process.
    """

    def __init__(self, directory: Path, n_mels: int):
        self.directory = Path(directory)
        try:
            index = json.loads((self.directory / "index.json").read_text(encoding="utf-8"))
            failed = json.loads((self.directory / "failed.json").read_text(encoding="utf-8"))
            self.offsets = np.load(self.directory / "offsets.npy", allow_pickle=False)
            self.mfcc = np.load(self.directory / "mfcc.npy", allow_pickle=False)
            self.durations = np.load(self.directory / "durations.npy", allow_pickle=False)
            mel = np.load(self.directory / "mel.npy", mmap_mode="r", allow_pickle=False)  # header only
            mel_shape, mel_dtype, self._mel_offset = mel.shape, mel.dtype, int(mel.offset)
            c_order = bool(mel.flags.c_contiguous)
            del mel
        except (OSError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"shard {self.directory.name} cannot be read: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("tracks"), list) or not isinstance(failed, dict):
            raise DataError(f"shard {self.directory.name}: index.json or failed.json is malformed")
        self.tracks: list[dict] = index["tracks"]
        self.failed: dict = failed
        self.created_ns = int(index.get("created_ns", 0))
        n = len(self.tracks)
        problems = []
        if mel_dtype != np.float32 or len(mel_shape) != 2 or mel_shape[1] != n_mels:
            problems.append(f"mel.npy is {mel_dtype} {mel_shape}, expected float32 (T, {n_mels})")
        if not c_order:
            problems.append("mel.npy is in Fortran order, expected C order (frame-major)")
        if self.offsets.dtype != np.int64 or self.offsets.shape != (n + 1,) or (n and (self.offsets[0] != 0 or np.any(np.diff(self.offsets) <= 0))):
            problems.append("offsets.npy does not match the index")
        elif len(mel_shape) == 2 and int(self.offsets[-1]) != mel_shape[0]:
            problems.append(f"offsets end at {int(self.offsets[-1])}, mel.npy has {mel_shape[0]} frames")
        if self.mfcc.dtype != np.float32 or self.mfcc.ndim != 2 or len(self.mfcc) != n:
            problems.append("mfcc.npy does not match the index")
        if self.durations.shape != (n,):
            problems.append("durations.npy does not match the index")
        if problems:
            raise DataError(f"shard {self.directory.name} is damaged: {'; '.join(problems)}")
        self.n_mels = n_mels
        self.mel_path = self.directory / "mel.npy"

    def __len__(self) -> int:
        return len(self.tracks)

    def frames(self, row: int) -> int:
        return int(self.offsets[row + 1] - self.offsets[row])

    def read_frames(self, row: int, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Frames ``start:stop`` of track ``row`` as a fresh ``(stop - start, n_mels)`` float32 array."""
        total = self.frames(row)
        stop = total if stop is None else min(stop, total)
        if not 0 <= start < stop:
            raise ParameterError(f"frame range {start}:{stop} is outside track {row} of {self.directory.name} ({total} frames)")
        first = int(self.offsets[row]) + start
        count = (stop - start) * self.n_mels
        out = np.empty(count, np.float32)
        fd = os.open(self.mel_path, os.O_RDONLY)
        try:  # one positional read straight into the output array
            got = os.preadv(fd, [memoryview(out).cast("B")], self._mel_offset + first * self.n_mels * 4)
        finally:
            os.close(fd)
        if got != out.nbytes:
            raise DataError(f"shard {self.directory.name}: mel.npy ends early (track {row})")
        return out.reshape(stop - start, self.n_mels)

    def mel_db(self, row: int) -> np.ndarray:
        """Track ``row``'s log-mel ``(n_mels, T)`` float32 dB, as :func:`musiclust.features.mel.log_mel` made it."""
        return np.ascontiguousarray(self.read_frames(row).T)


@dataclass
class Catalog:
    """Every track of a store: which shard and row hold it, and every recorded failure."""

    shards: list[Shard]
    where: dict[str, tuple[int, int]]  # path -> (shard index, row)
    failed: dict[str, dict]  # path -> {reason, size, mtime_ns} (a later success wins over a failure)
    damaged: dict[str, str]  # shard directory name -> why it was not used

    def stamp_done(self, stamp: FileStamp) -> bool:
        """Whether this version of the file is already in the store (featurized or recorded as failed)."""
        hit = self.where.get(stamp.path)
        if hit is not None:
            t = self.shards[hit[0]].tracks[hit[1]]
            return t.get("size") == stamp.size and t.get("mtime_ns") == stamp.mtime_ns
        bad = self.failed.get(stamp.path)
        return bad is not None and bad.get("size") == stamp.size and bad.get("mtime_ns") == stamp.mtime_ns


def iter_shard_dirs(root: Path) -> Iterator[Path]:
    root = Path(root)
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(SHARD_PREFIX) and entry.is_dir():
            yield entry


def open_store(root: Path, config: Optional[FeatureConfig] = None) -> tuple[FeatureConfig, Catalog]:
    """Read every shard's index (a few KB each); mel frames stay on disk.

    A path featurized in more than one shard (it changed between runs) is taken from the newest shard.
    A damaged shard is reported in ``Catalog.damaged`` and not used.
    """
    meta = read_store_meta(root)
    stored = FeatureConfig.from_dict(meta["feature_config"])
    if config is not None and stored != config:
        raise DataError(f"{root} holds features made with other parameters (fingerprint {stored.fingerprint()}, wanted {config.fingerprint()})")
    shards, damaged = [], {}
    for directory in iter_shard_dirs(root):
        try:
            shards.append(Shard(directory, stored.n_mels))
        except DataError as exc:
            damaged[directory.name] = str(exc)
    shards.sort(key=lambda s: s.created_ns)  # oldest first: newer records overwrite older ones below
    where: dict[str, tuple[int, int]] = {}
    failed: dict[str, dict] = {}
    for i, shard in enumerate(shards):
        for path, record in shard.failed.items():
            failed[path] = record if isinstance(record, dict) else {"reason": str(record)}
            where.pop(path, None)
        for row, t in enumerate(shard.tracks):
            where[t["path"]] = (i, row)
            failed.pop(t["path"], None)
    return stored, Catalog(shards, where, failed, damaged)


def set_aside_damaged(root: Path, names: Iterable[str]) -> None:
    """Rename damaged shards out of the way (kept as evidence) so their tracks can be featurized again."""
    for name in names:
        src = Path(root) / name
        if src.is_dir():
            os.rename(src, Path(root) / f"{BAD_PREFIX}{name}-{time.time_ns()}")
