"""Faults in the feature cache, tried for real on real rendered clips: an entry cut short at every
kind of point, or crafted (wrong shapes, NaN, a pickle payload, an object array): recomputed, never
trusted, nothing run; and a swapped file is never served a stale entry, because the cache is keyed by
content. Model checkpoints under the same faults: ``test_faults.py``.
"""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from musiclust.features.mel import FeatureStore, compute_features
from support import Pickled


# --- feature cache -------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path, real_clip_paths):
    store = FeatureStore(tmp_path / "cache")
    fresh, cached = store.get(real_clip_paths[0])
    assert not cached
    (entry,) = list((tmp_path / "cache").rglob("*.npz"))
    return store, real_clip_paths[0], entry, fresh


def _assert_recomputed(store, path, entry, fresh):
    again, cached = store.get(path)
    assert not cached, "a damaged cache entry was trusted"
    np.testing.assert_array_equal(again.mel_db, fresh.mel_db)
    np.testing.assert_array_equal(again.mfcc_stats, fresh.mfcc_stats)
    assert store.get(path)[1], "the recomputed entry is written back whole"


def test_cache_entry_cut_short_anywhere_is_recomputed(store):
    store, path, entry, fresh = store
    whole = entry.read_bytes()
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        offsets = sorted({0, 4, 30, *(i.header_offset + d for i in archive.infolist() for d in (0, 20, 60, 200)), len(whole) - 22, len(whole) - 1})
    for cut in [c for c in offsets if 0 <= c < len(whole)]:
        entry.write_bytes(whole[:cut])
        _assert_recomputed(store, path, entry, fresh)
    assert len(offsets) > 8


def test_crafted_cache_entries_are_recomputed_and_run_nothing(store, tmp_path):
    store, path, entry, fresh = store
    marker = tmp_path / "pwned-cache"
    nan_mel = fresh.mel_db.copy()
    nan_mel[3, 5] = np.nan

    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    huge_header = io.BytesIO()
    with zipfile.ZipFile(huge_header, "w") as archive:  # an .npy header promising 4 TB of float32
        header = {"descr": "<f4", "fortran_order": False, "shape": (128, 2**40 // 128)}
        body = io.BytesIO()
        np.lib.format.write_array_header_1_0(body, header)
        archive.writestr("mel_db.npy", body.getvalue() + b"\0" * 64)
    crafted = {
        "pickle payload": pickle.dumps(Pickled(marker)),
        "object array (pickle inside npz)": npz(mel_db=np.array([Pickled(marker)], dtype=object), mfcc_stats=fresh.mfcc_stats, duration=1.0),
        "NaN in the mel": npz(mel_db=nan_mel, mfcc_stats=fresh.mfcc_stats, duration=fresh.duration),
        "Inf duration": npz(mel_db=fresh.mel_db, mfcc_stats=fresh.mfcc_stats, duration=np.inf),
        "duration is an array": npz(mel_db=fresh.mel_db, mfcc_stats=fresh.mfcc_stats, duration=np.arange(3.0)),
        "float64 mel": npz(mel_db=fresh.mel_db.astype(np.float64), mfcc_stats=fresh.mfcc_stats, duration=fresh.duration),
        "wrong band count": npz(mel_db=fresh.mel_db[:64], mfcc_stats=fresh.mfcc_stats, duration=fresh.duration),
        "a bare .npy": _npy(fresh.mel_db),
        "npy header promising 4 TB": huge_header.getvalue(),
        "empty file": b"",
    }
    for what, data in crafted.items():
        entry.write_bytes(data)
        try:
            _assert_recomputed(store, path, entry, fresh)
        except Exception as exc:  # name the case
            raise AssertionError(f"{what}: {exc!r}") from exc
        assert not marker.exists(), f"{what}: a crafted cache entry ran code"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_cache_is_keyed_by_content_so_a_swapped_file_is_never_served_stale(tmp_path, real_clip_paths):
    store = FeatureStore(tmp_path / "cache")
    target = tmp_path / "track.wav"
    shutil.copy(real_clip_paths[0], target)
    first, _ = store.get(target)
    shutil.copy(real_clip_paths[1], target)  # same name and size class, other music
    second, cached = store.get(target)
    assert not cached
    np.testing.assert_array_equal(second.mel_db, compute_features(real_clip_paths[1]).mel_db)
