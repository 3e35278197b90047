"""Features against librosa directly, segments, and the on-disk cache (hit, miss, invalidation)."""

import shutil

import librosa
import numpy as np
import pytest

from musiclust.config import FeatureConfig
from musiclust.errors import ParameterError
from musiclust.features.mel import FeatureStore, compute_features, log_mel, mfcc_statistics, segments

CFG = FeatureConfig()


def test_log_mel_matches_librosa(real_clip_paths):
    y, sr = librosa.load(real_clip_paths[0], sr=None)
    ours = log_mel(y, CFG)
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128, fmax=11025.0), ref=1.0, amin=1e-10, top_db=None
    )
    assert ours.shape == (128, 1 + len(y) // 512)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_mfcc_statistics_match_librosa(real_clip_paths):
    y, _ = librosa.load(real_clip_paths[0], sr=None)
    mel = log_mel(y, CFG)
    mfcc = librosa.feature.mfcc(S=mel, n_mfcc=20)
    stats = mfcc_statistics(mel, 20)
    assert stats.shape == (80,)
    np.testing.assert_allclose(stats[:20], mfcc.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(stats[20:40], mfcc.std(axis=1), rtol=1e-5, atol=1e-4)


def test_segments_shapes_and_content():
    mel = np.arange(4 * 300, dtype=np.float32).reshape(4, 300)
    segs = segments(mel, 128)
    assert segs.shape == (2, 4, 128)
    np.testing.assert_array_equal(segs[1], mel[:, 128:256])
    short = segments(mel[:, :50], 128)  # tiled, not zero-padded
    assert short.shape == (1, 4, 128)
    np.testing.assert_array_equal(short[0, :, 50:100], mel[:, :50])
    with pytest.raises(ParameterError):
        segments(mel[:, :0], 128)


def test_store_hit_miss_and_invalidation(tmp_path, real_clip_paths):
    audio = tmp_path / "a.wav"
    shutil.copy(real_clip_paths[0], audio)
    store = FeatureStore(tmp_path / "cache", CFG)
    first, cached = store.get(audio)
    assert not cached
    again, cached = store.get(audio)
    assert cached
    np.testing.assert_array_equal(first.mel_db, again.mel_db)
    # same content under another name: still a hit
    renamed = tmp_path / "b.wav"
    shutil.copy(audio, renamed)
    assert store.get(renamed)[1]
    # changed content: a miss, recomputed
    shutil.copy(real_clip_paths[1], audio)
    changed, cached = store.get(audio)
    assert not cached and not np.array_equal(changed.mel_db, first.mel_db)
    # other feature parameters: a separate entry
    other = FeatureStore(tmp_path / "cache", FeatureConfig(n_mels=64))
    feats, cached = other.get(audio)
    assert not cached and feats.mel_db.shape[0] == 64


def test_truncated_cache_entry_is_recomputed(tmp_path, real_clip_paths):
    store = FeatureStore(tmp_path / "cache", CFG)
    feats, _ = store.get(real_clip_paths[0])
    entries = list((tmp_path / "cache").rglob("*.npz"))
    assert len(entries) == 1
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[: len(data) // 3])
    again, cached = store.get(real_clip_paths[0])
    assert not cached
    np.testing.assert_array_equal(again.mel_db, feats.mel_db)


def test_get_many_in_parallel_reports_bad_files(tmp_path, real_clip_paths):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all" * 100)
    paths = list(real_clip_paths[:3]) + [bad]
    seen = []
    report = FeatureStore(tmp_path / "cache", CFG).get_many(paths, jobs=2, progress=lambda d, t: seen.append((d, t)))
    assert set(report.features) == {str(p) for p in real_clip_paths[:3]}
    assert "not audio" in report.failed[str(bad)]
    assert seen[-1] == (4, 4)
    serial = compute_features(real_clip_paths[0], CFG)
    np.testing.assert_array_equal(report.features[str(real_clip_paths[0])].mel_db, serial.mel_db)
