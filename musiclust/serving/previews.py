"""Small MP3 previews of collection tracks, for the browser's players.

Why: an upload's answer shows five neighbours with a player each, and the cluster card one more. Served
as the collection's own files, that is ~1.3 MB of WAV a player on the default set (minutes of FLAC on a
real library), all sent before the answer is complete. A preview is what the model heard of the track
(:func:`musiclust.features.audio.load_audio`: a clip, or the excerpt windows of a long track) at the
features' sample rate, mono, as MP3 (every browser plays it): ~0.1 MB for 30 s. Each is made once and
kept in ``data/cache/previews`` under the file's content hash, written atomically; the hash itself is
remembered by file stamp (:mod:`musiclust.features.hashes`), so a page's players read no audio to find them.

The map's player still serves the track's own file: a click there is "hear this track", whole.

Making one takes ~0.5 s of CPU (decode + encode), too long to wait for five of them before an answer:
:func:`ready_preview` returns a preview only when it exists, and otherwise queues it on one background
thread and lets the caller serve the file itself this once.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import soundfile as sf

from musiclust.config import FeatureConfig
from musiclust.features.audio import load_audio
from musiclust.features.hashes import HashIndex, remembered_hash
from musiclust.paths import PREVIEW_CACHE

PREVIEW_MIME = "audio/mpeg"


def encode_mp3(audio, sample_rate: int) -> bytes:
    """Mono float samples -> MP3 bytes (libsndfile's LAME encoder, variable bit rate)."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    return buffer.getvalue()


_INDEXES: dict = {}  # cache folder -> the HashIndex of the files previewed there
_INDEX_LOCK = threading.Lock()  # a HashIndex is not thread-safe, and every session's page thread asks


def _content_hash(path: Path, cache: Path) -> str:
    """``path``'s content hash, remembered by file stamp beside the previews: a page shows six players and
    asks again on every rerun, and hashing a full-length track reads all of it (~0.1 s for 30 MB)."""
    with _INDEX_LOCK:
        index = _INDEXES.setdefault(Path(cache), HashIndex(Path(cache) / "content-hashes"))
        return remembered_hash(Path(path), index)


def preview_entry(path: Path, config: FeatureConfig = FeatureConfig(), cache: Path = PREVIEW_CACHE) -> Path:
    """Where the preview of ``path`` (by its content) is kept."""
    key = f"{_content_hash(path, cache)}-{config.fingerprint()}.mp3"
    return Path(cache) / key[:2] / key


def audio_preview(path: Path, config: FeatureConfig = FeatureConfig(), cache: Path = PREVIEW_CACHE) -> Path:
    """The MP3 preview of the audio file ``path`` (made and cached on first use); raises
    :class:`~musiclust.errors.AudioError` for a file that cannot be decoded."""
    entry = preview_entry(path, config, cache)
    if entry.is_file():
        return entry
    data = encode_mp3(load_audio(path, config), config.sample_rate)
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry


_MAKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="musiclust-previews")  # one core's worth at most
_QUEUED: set = set()
_QUEUED_LOCK = threading.Lock()


def ready_preview(path: Path, config: FeatureConfig = FeatureConfig(), cache: Path = PREVIEW_CACHE) -> Optional[Path]:
    """The preview of ``path`` if it exists; otherwise None, with its making queued in the background
    (once per entry; a file that cannot be decoded is simply left without one)."""
    entry = preview_entry(path, config, cache)
    if entry.is_file():
        return entry
    with _QUEUED_LOCK:
        if entry in _QUEUED:
            return None
        _QUEUED.add(entry)

    def make() -> None:
        try:
            audio_preview(path, config, cache)
        except Exception:  # noqa: BLE001  (a preview is a convenience: the player falls back to the file)
            pass
        finally:
            with _QUEUED_LOCK:
                _QUEUED.discard(entry)

    _MAKER.submit(make)
    return None
