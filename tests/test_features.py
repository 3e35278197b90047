"""Features against librosa (within bounds derived from the default set), segments, the on-disk cache (hit, miss,
invalidation by content and by features_version) and the remembered content hashes (a rescan reads no audio)."""

import json
import os
import shutil
import time
from pathlib import Path

import librosa
import numpy as np
import pytest

from musiclust.config import FeatureConfig
from musiclust.errors import ParameterError
from musiclust.features.mel import FeatureStore, compute_features, log_mel, mfcc_statistics, segments

CFG = FeatureConfig()


# Bounds derived from the data (docs/benchmark.md, 2026-12-03): over the 490 clips of the default set,
# features_version 2 (float32 FFT) was at most 2.06e-3 dB from librosa anywhere, and at most 1.7e-4 dB in
# bands within 60 dB of their frame's total (float32 rounding is relative to the whole frame, so only
# bands far below it move); version 1 (float64 FFT) at most 1.5e-5 dB. Each bound is about twice that.
V2_MAX_DB, V2_LOUD_MAX_DB, V2_LOUD_WITHIN_DB, V1_MAX_DB = 4e-3, 4e-4, 60.0, 3e-5


def librosa_log_mel(y, sr):
    power = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128, fmax=11025.0)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None), power


def test_log_mel_is_within_the_stated_bound_of_librosa(real_clip_paths):
    worst = {"v1": 0.0, "v2": 0.0, "v2_loud": 0.0}
    for path in real_clip_paths:
        y, sr = librosa.load(path, sr=None)
        ref, power = librosa_log_mel(y, sr)
        below_frame = 10 * np.log10(power.sum(axis=0, keepdims=True)) - 10 * np.log10(np.maximum(power, 1e-30))
        v2, v1 = log_mel(y, CFG), log_mel(y, FeatureConfig(features_version=1))
        assert v2.shape == v1.shape == ref.shape == (128, 1 + len(y) // 512)
        error = np.abs(v2 - ref)
        worst["v2"] = max(worst["v2"], float(error.max()))
        worst["v2_loud"] = max(worst["v2_loud"], float(error[below_frame <= V2_LOUD_WITHIN_DB].max()))
        worst["v1"] = max(worst["v1"], float(np.abs(v1 - ref).max()))
    assert worst["v2"] <= V2_MAX_DB and worst["v2_loud"] <= V2_LOUD_MAX_DB and worst["v1"] <= V1_MAX_DB, worst


def test_mfcc_statistics_match_librosa(real_clip_paths):
    y, _ = librosa.load(real_clip_paths[0], sr=None)
    mel = log_mel(y, CFG)
    mfcc = librosa.feature.mfcc(S=mel, n_mfcc=20)
    delta = librosa.feature.delta(mfcc)
    want = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1), delta.mean(axis=1), delta.std(axis=1)])
    np.testing.assert_array_equal(mfcc_statistics(mel, 20, features_version=1), want.astype(np.float32))  # librosa's own calls
    stats = mfcc_statistics(mel, 20)
    assert stats.shape == (80,)
    np.testing.assert_allclose(stats, want, rtol=1e-5, atol=1e-4)  # the same values to float32 rounding
    for frames in (3, 4, 8, 9, 10):  # the delta's edges, also when the clip is shorter than its window
        short = mel[:, :frames]
        np.testing.assert_allclose(mfcc_statistics(short, 20), mfcc_statistics(short, 20, features_version=1), rtol=1e-5, atol=1e-4)


def test_features_version_is_part_of_the_cache_key(tmp_path, real_clip_paths):
    assert FeatureConfig().features_version == 2
    assert FeatureConfig().fingerprint() != FeatureConfig(features_version=1).fingerprint()
    written_before_versions = {k: v for k, v in FeatureConfig().to_dict().items() if k != "features_version"}
    assert FeatureConfig.from_dict(written_before_versions).features_version == 1  # what such features were made with
    with pytest.raises(ParameterError, match="features_version"):
        FeatureConfig(features_version=3)
    new, cached_new = FeatureStore(tmp_path / "cache", CFG).get(real_clip_paths[0])
    old, cached_old = FeatureStore(tmp_path / "cache", FeatureConfig(features_version=1)).get(real_clip_paths[0])
    assert not cached_new and not cached_old  # one entry per version: never served as the other's
    assert not np.array_equal(new.mel_db, old.mel_db)
    np.testing.assert_array_equal(old.mel_db, compute_features(real_clip_paths[0], FeatureConfig(features_version=1)).mel_db)


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


# --- remembered content hashes: a rescan reads no audio ---------------------------------------------
class AudioReads:
    """Counts what touches the audio files' bytes: hashing them, opening them from Python, decoding them."""

    def __init__(self, monkeypatch, audio_paths):
        import builtins

        import soundfile

        from musiclust.features import mel

        self.hashed: list[str] = []
        self.opened: list[str] = []
        self.decoded: list[str] = []
        audio = {str(Path(p).resolve()) for p in audio_paths}
        real_hash, real_open, real_soundfile = mel.content_hash, builtins.open, soundfile.SoundFile

        def counting_hash(path):
            self.hashed.append(str(Path(path).resolve()))
            return real_hash(path)

        def counting_open(file, *args, **kwargs):
            if isinstance(file, (str, Path)) and str(Path(file).resolve()) in audio:
                self.opened.append(str(file))
            return real_open(file, *args, **kwargs)

        class CountingSoundFile(real_soundfile):
            def __init__(inner, file, *args, **kwargs):
                if isinstance(file, (str, Path)) and str(Path(file).resolve()) in audio:
                    self.decoded.append(str(file))
                super().__init__(file, *args, **kwargs)

        monkeypatch.setattr(mel, "content_hash", counting_hash)
        monkeypatch.setattr(builtins, "open", counting_open)
        monkeypatch.setattr(soundfile, "SoundFile", CountingSoundFile)

    def reset(self) -> None:
        self.hashed.clear(), self.opened.clear(), self.decoded.clear()


@pytest.fixture
def library(tmp_path, real_clip_paths):
    """Three real clips in a library folder (fresh files: their stamps are racy until RACY_SECONDS pass)."""
    folder = tmp_path / "library"
    folder.mkdir()
    paths = []
    for clip in real_clip_paths[:3]:
        shutil.copy(clip, folder / clip.name)
        paths.append(folder / clip.name)
    return paths


def test_rescan_of_unchanged_files_reads_no_audio_and_a_touched_file_is_hashed_again(tmp_path, library, monkeypatch):
    from musiclust.features.hashes import RACY_SECONDS

    time.sleep(RACY_SECONDS + 0.1)  # stamps of files changed in the last RACY_SECONDS are not remembered
    store = FeatureStore(tmp_path / "cache", CFG)
    reads = AudioReads(monkeypatch, library)
    first = store.get_many(library)
    assert first.computed == 3 and sorted(reads.hashed) == sorted(str(p.resolve()) for p in library)
    assert len(list((tmp_path / "cache" / "content-hashes").glob("*.json"))) >= 1

    reads.reset()
    fresh = FeatureStore(tmp_path / "cache", CFG)  # another process: the index is read from disk
    again = fresh.get_many(library)
    assert again.cached == 3 and again.computed == 0
    assert reads.hashed == [] and reads.opened == [] and reads.decoded == [], "an unchanged file was read"
    for p in library:
        np.testing.assert_array_equal(again.features[str(p)].mel_db, first.features[str(p)].mel_db)
    # the same file through another spelling of its path: the resolved path is the key
    assert FeatureStore(tmp_path / "cache", CFG).get(library[0].parent / ".." / "library" / library[0].name)[1]
    assert reads.hashed == []

    os.utime(library[1])  # touched: new mtime and ctime, same bytes
    reads.reset()
    touched = FeatureStore(tmp_path / "cache", CFG).get_many(library)
    assert reads.hashed == [str(library[1].resolve())] and reads.decoded == []
    assert touched.cached == 3  # same content: the features come from the cache


def test_a_same_size_edit_with_its_mtime_put_back_gets_new_features(tmp_path, library, monkeypatch):
    """Size, mtime and inode unchanged (``mp3gain -p`` does this): the ctime still tells, so it is re-hashed."""
    import soundfile as sf

    from musiclust.features.hashes import RACY_SECONDS

    target = library[0]
    store = FeatureStore(tmp_path / "cache", CFG)
    time.sleep(RACY_SECONDS + 0.1)
    before, _ = store.get(target)
    assert store.hashes.lookup(__import__("musiclust.features.hashes", fromlist=["x"]).HashStamp.of(target)) is not None
    st = os.stat(target)
    samples, sr = sf.read(str(target), dtype="int16")
    samples[: sr // 2] = 0  # the first half second silenced, in place: same size
    with sf.SoundFile(str(target), "r+") as handle:
        handle.seek(0)
        handle.write(samples)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after_stat = os.stat(target)
    assert (after_stat.st_size, after_stat.st_mtime_ns, after_stat.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    reads = AudioReads(monkeypatch, [target])
    after, cached = FeatureStore(tmp_path / "cache", CFG).get(target)
    assert reads.hashed == [str(target.resolve())] and not cached
    assert not np.array_equal(after.mel_db, before.mel_db)
    np.testing.assert_array_equal(after.mel_db, compute_features(target, CFG).mel_db)


def test_a_damaged_hash_index_is_ignored_and_files_are_hashed_again(tmp_path, library, monkeypatch):
    from musiclust.features.hashes import RACY_SECONDS

    time.sleep(RACY_SECONDS + 0.1)
    FeatureStore(tmp_path / "cache", CFG).get_many(library)
    buckets = list((tmp_path / "cache" / "content-hashes").glob("*.json"))
    assert buckets and not list((tmp_path / "cache" / "content-hashes").glob("*.tmp"))
    for bucket in buckets:
        data = json.loads(bucket.read_text())
        assert data["format"] == "musiclust-content-hashes" and all(len(r["sha256"]) == 64 for r in data["files"].values())
        bucket.write_text(bucket.read_text()[: len(bucket.read_text()) // 2])  # cut short
    reads = AudioReads(monkeypatch, library)
    report = FeatureStore(tmp_path / "cache", CFG).get_many(library)
    assert report.cached == 3 and sorted(reads.hashed) == sorted(str(p.resolve()) for p in library)
    reads.reset()
    assert FeatureStore(tmp_path / "cache", CFG).get_many(library).cached == 3 and reads.hashed == []  # rewritten whole


def test_racy_or_changing_stamps_are_not_remembered(tmp_path, library):
    """A digest is kept only when the file's ctime is RACY_SECONDS older than the hashing, and the file did
    not change while it was read."""
    from musiclust.features.hashes import RACY_SECONDS, HashIndex, HashStamp, content_hash

    index = HashIndex(tmp_path / "hashes")
    stamp = HashStamp.of(library[0])
    digest = content_hash(library[0])
    assert not index.remember(stamp, digest, started_ns=stamp.ctime_ns + int(RACY_SECONDS * 1e9) // 2)
    assert index.lookup(stamp) is None
    os.utime(library[1], ns=(0, 10**9))
    moved = HashStamp.of(library[1])
    os.utime(library[1], ns=(0, 2 * 10**9))  # changed after its stamp was taken
    assert not index.remember(moved, content_hash(library[1]), started_ns=moved.ctime_ns + 10**12)
    assert index.remember(stamp, digest, started_ns=stamp.ctime_ns + int(RACY_SECONDS * 1e9) + 1)
    assert index.lookup(stamp) == digest and index.lookup(HashStamp.of(library[1])) is None
    index.save()
    assert HashIndex(tmp_path / "hashes").lookup(stamp) == digest
    other = HashStamp(stamp.file, stamp.ctime_ns, stamp.inode + 1)  # another file moved over this path
    assert HashIndex(tmp_path / "hashes").lookup(other) is None
