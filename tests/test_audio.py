"""Decoding and validation: real clips in several containers, and every bad input as a typed error."""

import io

import numpy as np
import pytest
import soundfile as sf

from musiclust.features.audio import audio_info, load_audio, prepare_samples
from musiclust.config import FeatureConfig
from musiclust.errors import AudioError, ParameterError

CFG = FeatureConfig()


@pytest.fixture(scope="module")
def clip(real_clip_paths):
    y, sr = sf.read(real_clip_paths[0], dtype="float32")
    assert sr == 22050 and y.ndim == 1
    return y


def _encode(y, sr, fmt, subtype=None, channels=1):
    buf = io.BytesIO()
    data = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_wav_round_trip_is_exact(clip):
    out = load_audio(_encode(clip, 22050, "WAV", "FLOAT"), CFG)
    np.testing.assert_array_equal(out, clip[: len(out)])


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_compressed_formats_decode_close_to_the_original(clip, fmt):
    out = load_audio(_encode(clip, 22050, fmt), CFG)
    assert abs(len(out) - len(clip)) < 0.1 * 22050  # codec padding at most
    n = min(len(out), len(clip))
    if fmt == "FLAC":
        np.testing.assert_allclose(out[:n], clip[:n], atol=1e-4)
    else:  # lossy: the spectrum matches, the waveform need not
        assert np.std(out) == pytest.approx(np.std(clip), rel=0.2)


def test_stereo_and_44k_give_the_same_audio(clip):
    import soxr

    up = soxr.resample(clip, 22050, 44100)
    out = load_audio(_encode(up, 44100, "WAV", "FLOAT", channels=2), CFG)
    n = min(len(out), len(clip)) - 2000
    assert np.corrcoef(out[1000:n], clip[1000:n])[0, 1] > 0.99


def test_long_file_gives_a_central_excerpt(clip):
    long = np.concatenate([np.zeros(22050 * 40, np.float32), clip, np.zeros(22050 * 40, np.float32)])
    cfg = FeatureConfig(clip_seconds=10)
    out = load_audio(_encode(long, 22050, "WAV", "FLOAT"), cfg)
    assert len(out) == 22050 * 10
    assert np.abs(out).max() > 0.01  # the music in the middle, not the leading silence


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is a text file, not audio" * 20, "not audio"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not audio"),
    ],
)
def test_undecodable_bytes(data, message):
    with pytest.raises(AudioError, match=message):
        load_audio(data, CFG)


def test_too_short():
    with pytest.raises(AudioError, match="at least 1 s"):
        load_audio(_encode(np.zeros(11025, np.float32), 22050, "WAV"), CFG)


def test_nan_and_inf_samples():
    y = np.zeros(44100, np.float32)
    y[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load_audio(_encode(y, 22050, "WAV", "FLOAT"), CFG)
    y[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        prepare_samples(y, 22050, CFG)


def test_duration_cap_is_checked_before_decoding():
    cfg = FeatureConfig(max_file_seconds=5)
    with pytest.raises(AudioError, match="minutes long"):
        load_audio(_encode(np.zeros(22050 * 6, np.float32), 22050, "WAV"), cfg)


def test_missing_path(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        audio_info(tmp_path / "absent.wav")


def test_prepare_samples_rejects_bad_shapes():
    with pytest.raises(ParameterError):
        prepare_samples(np.zeros((2, 2, 2)), 22050, CFG)
    with pytest.raises(ParameterError):
        prepare_samples(np.zeros(44100), 0, CFG)
