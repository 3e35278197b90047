"""The MusiCNN embedding cache on real clips: hits without the network, damage recomputed, segments aligned.

The network really runs here (the musicnn wheel's weights, one thread); calls are counted by wrapping
the real :func:`musiclust.pretrained.musicnn.musicnn_forward`, never by replacing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musiclust.config import FeatureConfig
from musiclust.errors import DataError, ParameterError
from musiclust.features.audio import load_audio
from musiclust.features.mel import log_mel, segments
from musiclust.pretrained import musicnn
from musiclust.pretrained import store as pstore
from musiclust.pretrained.store import PretrainedStore, aligned_features, aligned_patch_starts, segment_count


def setup_module(module):
    if importlib.util.find_spec("musicnn") is None:
        pytest.fail("MusiCNN weights absent: run scripts/setup (pip install --no-deps musicnn==0.1.0)", pytrace=False)


@pytest.fixture
def forward_calls(monkeypatch):
    """How many times the real network ran (patches per call recorded), through a counting wrapper."""
    calls = []
    real = musicnn.musicnn_forward

    def counted(patches, *args, **kwargs):
        calls.append(len(patches))
        return real(patches, *args, **kwargs)

    monkeypatch.setattr(musicnn, "musicnn_forward", counted)
    return calls


def test_second_call_is_served_from_the_cache_without_the_network(tmp_path, real_clip_paths, forward_calls):
    store = PretrainedStore(tmp_path)
    path = real_clip_paths[0]
    first, cached = store.get(path)
    assert not cached and len(forward_calls) == 1
    second, cached = store.get(path)
    assert cached and len(forward_calls) == 1  # no second run
    for name in ("penultimate", "taggram", "start_s"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
        assert getattr(second, name).dtype == np.float32
    # a copy under another name is the same content: a hit
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(Path(path).read_bytes())
    third, cached = store.get(copy)
    assert cached and len(forward_calls) == 1
    np.testing.assert_array_equal(third.penultimate, first.penultimate)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "nan", "wrong_shape"])
def test_a_damaged_entry_is_recomputed(tmp_path, real_clip_paths, forward_calls, damage):
    store = PretrainedStore(tmp_path)
    path = real_clip_paths[1]
    original, _ = store.get(path)
    entry = next((tmp_path / store.fingerprint()).rglob("*.npz"))
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:200])
    elif damage == "garbage":
        entry.write_bytes(b"not an npz at all")
    elif damage == "nan":
        pen = original.penultimate.copy()
        pen[0, 0] = np.nan
        np.savez(entry, penultimate=pen, taggram=original.taggram, start_s=original.start_s)
    else:
        np.savez(entry, penultimate=original.penultimate[:, :100], taggram=original.taggram, start_s=original.start_s)
    again, cached = store.get(path)
    assert not cached and len(forward_calls) == 2
    np.testing.assert_array_equal(again.penultimate, original.penultimate)
    assert store.get(path)[1]  # and the rewritten entry is whole again


def test_one_vector_per_mel_segment_over_the_same_audio(real_clip_paths):
    config = FeatureConfig()
    y = load_audio(real_clip_paths[2], config)
    feats = aligned_features(y, config)
    n_mel = len(segments(log_mel(y, config), config.segment_frames))
    assert segment_count(len(y), config) == n_mel == len(feats.penultimate) == len(feats.taggram)
    seg_starts = np.arange(n_mel) * config.segment_frames * config.hop_length / config.sample_rate
    assert np.abs(feats.start_s - seg_starts).max() <= musicnn.HOP / musicnn.SR / 2 + 1e-6  # within half a MusiCNN hop
    assert feats.vectors.shape == (n_mel, 250) and np.isfinite(feats.vectors).all()
    assert ((feats.taggram >= 0) & (feats.taggram <= 1)).all()
    # the patch under each segment is what the wheel's own patching gives for that audio: the first
    # patch starts at 0 in both, so it equals the wheel-style extraction's first patch
    wheel = musicnn.musicnn_embedding(y, config.sample_rate)
    np.testing.assert_allclose(feats.penultimate[0], wheel["penultimate"][0], atol=1e-5)


def test_patch_starts_are_clamped_to_the_spectrogram():
    config = FeatureConfig()
    starts = aligned_patch_starts(10, 1876, config)  # 30 s at 16 kHz / hop 256
    assert starts[0] == 0 and (np.diff(starts) > 0).all() and starts[-1] + musicnn.PATCH_FRAMES <= 1876
    assert (aligned_patch_starts(3, 100, config) == 0).all()  # shorter than a patch: tiled from 0
    assert segment_count(int(1.5 * config.sample_rate), config) == 1


def test_short_audio_is_tiled_like_the_mel(real_clip_paths):
    config = FeatureConfig()
    y = load_audio(real_clip_paths[3], config)[: int(1.2 * config.sample_rate)]
    feats = aligned_features(y, config)
    assert feats.penultimate.shape == (1, 200) and np.isfinite(feats.penultimate).all()


def test_key_depends_on_model_and_excerpt_not_on_the_mel_bands(tmp_path):
    base = PretrainedStore(tmp_path)
    assert PretrainedStore(tmp_path, model="MSD_musicnn").fingerprint() != base.fingerprint()
    assert PretrainedStore(tmp_path, replace(FeatureConfig(), clip_seconds=20.0)).fingerprint() != base.fingerprint()
    assert PretrainedStore(tmp_path, replace(FeatureConfig(), n_mels=64)).fingerprint() == base.fingerprint()
    assert base.key()["musicnn_wheel"] == "0.1.0"
    with pytest.raises(ParameterError, match="model must be one of"):
        PretrainedStore(tmp_path, model="VGG")


def test_get_many_in_two_processes_matches_one_and_reports_bad_files(tmp_path, real_clip_paths):
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"RIFF but nothing else")
    paths = [*real_clip_paths[:3], bad]
    seen = []
    two = PretrainedStore(tmp_path / "a").get_many(paths, jobs=2, progress=lambda i, n: seen.append((i, n)))
    one = PretrainedStore(tmp_path / "b").get_many(paths, jobs=1)
    assert list(two.features) == [str(p) for p in real_clip_paths[:3]] and str(bad) in two.failed
    assert "not audio" in two.failed[str(bad)] or "decoded" in two.failed[str(bad)]
    assert seen[-1] == (4, 4) and two.computed == 3 and two.cached == 0
    for key in two.features:
        np.testing.assert_array_equal(two.features[key].penultimate, one.features[key].penultimate)
    again = PretrainedStore(tmp_path / "a").get_many(paths[:3], jobs=2)
    assert again.cached == 3 and again.computed == 0
    with pytest.raises(ParameterError):
        PretrainedStore(tmp_path).get_many(paths, jobs=0)


def test_segment_vectors_refuse_a_count_that_does_not_match_the_mel(tmp_path, real_table):
    counts = [m.shape[1] // real_table.config.segment_frames for m in real_table.mels]
    vectors = pstore.segment_vectors(real_table, counts, root=tmp_path, jobs=1)
    assert [len(v) for v in vectors] == counts
    with pytest.raises(DataError, match="do not line up"):
        pstore.segment_vectors(real_table, [c + 1 for c in counts], root=tmp_path, jobs=1)
