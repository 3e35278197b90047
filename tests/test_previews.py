"""Players' previews: what the model heard of a collection track, as a small MP3, made once, in the background."""

import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musiclust.config import FeatureConfig
from musiclust.features.audio import load_audio
from musiclust.serving.previews import audio_preview, preview_entry, ready_preview


def test_preview_is_what_the_model_heard_smaller_and_made_once(real_clip_paths, tmp_path):
    config = FeatureConfig()
    clip = real_clip_paths[0]
    assert ready_preview(clip, config, tmp_path) is None  # not made yet: queued, the caller plays the file
    deadline = time.monotonic() + 120  # a hang guard, not a speed verdict
    while (entry := ready_preview(clip, config, tmp_path)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert entry is not None and entry == preview_entry(clip, config, tmp_path)
    assert entry.stat().st_size < clip.stat().st_size / 3  # the point: a fraction of the file's bytes
    heard, (played, rate) = load_audio(clip, config), sf.read(entry, dtype="float32")
    assert rate == config.sample_rate and played.ndim == 1
    n = min(len(heard), len(played))
    assert abs(len(played) - len(heard)) < 0.1 * config.sample_rate  # the same length, within MP3 padding
    # the same music: the decoded MP3 follows the samples (encoder delay found by cross-correlation)
    lag = int(np.argmax(np.correlate(played[: n // 2], heard[: n // 4], mode="valid")))
    a, b = heard[: n - lag - 1], played[lag : n - 1]
    assert np.corrcoef(a, b)[0, 1] > 0.9
    mtime = entry.stat().st_mtime_ns
    assert audio_preview(clip, config, tmp_path) == entry and entry.stat().st_mtime_ns == mtime  # made once


def test_a_file_that_cannot_be_decoded_gets_no_preview(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"RIFF, but nothing after it")
    assert ready_preview(bad, FeatureConfig(), tmp_path / "cache") is None
    time.sleep(1.0)
    assert ready_preview(bad, FeatureConfig(), tmp_path / "cache") is None
    assert not list((tmp_path / "cache").rglob("*.mp3"))


def test_a_players_file_is_hashed_once_while_unchanged_and_again_when_edited(real_clip_paths, tmp_path, monkeypatch):
    """A page asks for six previews on every rerun: the content hash is remembered by file stamp (beside the
    previews, so a restarted server remembers it too), and an edited file gets another entry."""
    from musiclust.features import hashes
    from musiclust.serving import previews

    monkeypatch.setattr(hashes, "RACY_SECONDS", -1.0)  # a file written just now may be remembered (the rule is tested in test_features)
    reads = []
    real_hash = hashes.content_hash
    track, cache, config = tmp_path / "track.wav", tmp_path / "cache", FeatureConfig()
    # this track's reads only: a background preview of an earlier test in this process may still hash its own file
    monkeypatch.setattr(hashes, "content_hash", lambda path: (Path(path) == track and reads.append(path)) or real_hash(path))
    track.write_bytes(real_clip_paths[0].read_bytes())
    first = preview_entry(track, config, cache)
    assert preview_entry(track, config, cache) == first and len(reads) == 1
    monkeypatch.setattr(previews, "_INDEXES", {})  # a new server process: the index is read from disk
    assert preview_entry(track, config, cache) == first and len(reads) == 1
    track.write_bytes(real_clip_paths[1].read_bytes() + b"tag")  # edited in place (another size: whatever the clock's grain)
    edited = preview_entry(track, config, cache)
    assert edited != first and len(reads) == 2
    assert edited.name.startswith(real_hash(track))
