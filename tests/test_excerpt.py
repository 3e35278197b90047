"""What a model hears of a long track (FeatureConfig.excerpt): exactly the windows the policy names,
checked sample for sample on a long real file made by joining the real test clips."""

import io

import numpy as np
import pytest
import soundfile as sf

from musiclust.config import FeatureConfig
from musiclust.errors import ParameterError
from musiclust.features.audio import excerpt_windows, load_audio
from musiclust.features.mel import compute_features

RATE = 22050


@pytest.fixture(scope="module")
def long_track(real_clip_paths):
    """The 20 real 8-s clips joined: one ~160 s recording at 22,050 Hz, as float WAV bytes (exact samples)."""
    parts = []
    for path in real_clip_paths:
        y, sr = sf.read(path, dtype="float32")
        assert sr == RATE
        parts.append(y)
    samples = np.concatenate(parts)
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="FLOAT")
    assert len(samples) > 120 * RATE
    return samples, buf.getvalue()


@pytest.mark.parametrize("n", [3, 5])
def test_windows_policy_reads_the_windows_it_names(long_track, n):
    samples, data = long_track
    cfg = FeatureConfig(excerpt="windows", excerpt_windows=n)
    spans = excerpt_windows(len(samples), RATE, cfg)
    width = int(round(cfg.clip_seconds * RATE)) // n
    assert [w for _, w in spans] == [width] * n
    # centred at 1/2n, 3/2n, ... of the track: evenly spread, in order, never overlapping
    for i, (start, _) in enumerate(spans):
        assert abs(start + width / 2 - (2 * i + 1) * len(samples) / (2 * n)) <= 1
    assert all(a + width <= b for (a, _), (b, _) in zip(spans, spans[1:]))
    out = load_audio(data, cfg)
    expected = np.concatenate([samples[s : s + w] for s, w in spans])
    np.testing.assert_array_equal(out, expected)


def test_middle_policy_reads_the_central_clip(long_track):
    samples, data = long_track
    cfg = FeatureConfig(excerpt="middle")
    want = int(round(cfg.clip_seconds * RATE))
    assert excerpt_windows(len(samples), RATE, cfg) == [((len(samples) - want) // 2, want)]
    out = load_audio(data, cfg)
    start = (len(samples) - want) // 2
    np.testing.assert_array_equal(out, samples[start : start + want])


def test_both_policies_hear_a_short_track_whole(real_clip_paths):
    y, _ = sf.read(real_clip_paths[0], dtype="float32")
    for cfg in (FeatureConfig(excerpt="middle"), FeatureConfig(excerpt="windows", excerpt_windows=5)):
        np.testing.assert_array_equal(load_audio(real_clip_paths[0], cfg), y)


def test_windows_policy_features_differ_from_the_middle_on_a_long_track(long_track):
    _, data = long_track
    middle = compute_features(data, FeatureConfig(excerpt="middle"))
    windows = compute_features(data, FeatureConfig(excerpt="windows"))
    assert middle.duration == pytest.approx(windows.duration, abs=1 / RATE) == pytest.approx(30.0, abs=1 / RATE)
    assert not np.allclose(middle.mfcc_stats, windows.mfcc_stats)


def test_excerpt_settings_are_checked_and_described():
    with pytest.raises(ParameterError, match="excerpt"):
        FeatureConfig(excerpt="start")
    with pytest.raises(ParameterError, match="excerpt_windows"):
        FeatureConfig(excerpt="windows", excerpt_windows=0)
    with pytest.raises(ParameterError, match="FFT"):
        FeatureConfig(excerpt="windows", clip_seconds=1.0, excerpt_windows=20)
    assert "middle 30 s" in FeatureConfig(excerpt="middle").excerpt_description
    assert "5 windows of 6 s" in FeatureConfig(excerpt="windows", excerpt_windows=5).excerpt_description


def test_records_from_before_the_option_mean_the_middle_excerpt():
    """Caches, shard stores and checkpoints written before ``excerpt`` existed keep their fingerprint
    and read back as the middle excerpt, whatever today's default is."""
    middle = FeatureConfig(excerpt="middle")
    assert "excerpt" not in middle.to_dict()
    assert FeatureConfig.from_dict(middle.to_dict()) == middle
    windows = FeatureConfig(excerpt="windows", excerpt_windows=4)
    assert FeatureConfig.from_dict(windows.to_dict()) == windows
    assert windows.fingerprint() != middle.fingerprint()
