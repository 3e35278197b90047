"""Decode and validate audio: any file people have becomes clean mono float32 at the model's rate.

Validation happens by decoding, never by file extension: the header is read first
(:func:`soundfile.info`) so a file claiming hours of audio is refused before any sample is read,
and the samples themselves are checked for NaN/Inf. Every failure is an :class:`AudioError`
whose message a person understands.

The C decoders behind libsndfile write their own notes to the process' stderr (libmpg123:
"Note: Illegal Audio-MPEG-Header ..."), which would reach a CLI user as stray lines beside the one
``error:`` line. Every libsndfile call here therefore runs inside :func:`decoder_messages`, which points
file descriptor 2 at a temporary file for the call and turns what the decoder said into the error's reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np
import soundfile as sf
import soxr

from musiclust.config import FeatureConfig
from musiclust.errors import AudioError, ParameterError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff")  # what libsndfile 1.2 decodes
SUPPORTED_FORMATS = "WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF"
# libsndfile has no AAC/ALAC decoder and no packaged Python decoder here reads MPEG-4 audio (audioread
# would need ffmpeg or GStreamer, which are not dependencies): refused with what to do instead.
MPEG4_REFUSAL = (
    "MPEG-4 audio (M4A/AAC/ALAC) cannot be decoded here (libsndfile has no AAC decoder); "
    "convert it to FLAC, OGG or MP3 first, e.g. ffmpeg -i track.m4a track.flac"
)

AudioSource = Union[str, os.PathLike, bytes, BinaryIO]

MAX_SAMPLE_RATE = 384_000  # above every real recording format; a header claiming more is refused
MAX_CHANNELS = 64  # more is no music file people have; refused from the header
MAX_ABS_SAMPLE = 1e3  # float audio 60 dB beyond full scale is garbage (and would overflow the spectrum)
READ_BLOCK_SAMPLES = 1 << 21  # samples (frames x channels) decoded at once: ~8 MB whatever the channel count
READ_BLOCK_FRAMES = 1 << 16  # frames per read: a decode error mid-file loses at most this much
MAX_DECODER_NOTE_CHARS = 160  # what a decoder said, kept short: the whole message stays one readable line

# fd 2 belongs to the whole process: one redirection at a time, or two decodes in the app's threads
# would restore each other's descriptors in the wrong order. A fork (a process pool's worker) waits for
# the redirection in progress to end, so no child starts with fd 2 pointing at a capture file.
_STDERR_LOCK = threading.Lock()
os.register_at_fork(before=_STDERR_LOCK.acquire, after_in_parent=_STDERR_LOCK.release, after_in_child=_STDERR_LOCK.release)

# "[src/libmpg123/parse.c:do_readahead():1083] warning: " or "Note: ": where and how loud, not what
_DECODER_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:(?:note|warning|error)\s*:\s*)?", re.IGNORECASE)


class DecoderNotes:
    """What a C decoder wrote to stderr during one :func:`decoder_messages` block (``text`` after it)."""

    text: str = ""

    def reason(self) -> str:
        """The notes as one clause: ``"Illegal Audio-MPEG-Header 0x00000000 at offset 15; ..."``."""
        lines = [_DECODER_PREFIX.sub("", line).strip() for line in self.text.splitlines()]
        unique = list(dict.fromkeys(line.rstrip(".") for line in lines if line))
        joined = "; ".join(unique)
        return joined if len(joined) <= MAX_DECODER_NOTE_CHARS else joined[: MAX_DECODER_NOTE_CHARS - 1] + "…"


@contextlib.contextmanager
def decoder_messages() -> Iterator[DecoderNotes]:
    """Capture what C code writes to file descriptor 2 inside the block, instead of letting it reach the terminal.

    A temporary file, not a pipe, holds it: a decoder that writes more than a pipe buffers (a long
    damaged MP3 makes libmpg123 note every lost frame) cannot block. Anything else the process writes
    to fd 2 during the (milliseconds-long) block is captured too; Python's own ``sys.stderr`` is
    flushed before, so nothing written earlier is lost. Where fd 2 cannot be redirected (closed in a
    daemon), the block runs uncaptured.
    """
    notes = DecoderNotes()
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:
            yield notes
            return
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield notes
                finally:
                    os.dup2(saved, 2)
                    sink.seek(0)
                    notes.text = sink.read(64 * 1024).decode("utf-8", errors="replace")
        finally:
            os.close(saved)


@dataclass(frozen=True)
class AudioInfo:
    """What the header says, before decoding."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "the uploaded audio"


def _as_file(source: AudioSource):
    """soundfile takes a path or a seekable binary file; bytes become an in-memory file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if hasattr(source, "seek"):
        source.seek(0)
    return source


def audio_info(source: AudioSource) -> AudioInfo:
    """Read the header only. Raises :class:`AudioError` for anything that is not decodable audio."""
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        raise AudioError(f"{name} is empty (0 bytes)")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name} is empty (0 bytes)")
    try:
        with decoder_messages() as notes:
            info = sf.info(_as_file(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if _is_mpeg4(source):
            raise AudioError(f"{name}: {MPEG4_REFUSAL}") from None
        raise AudioError(
            f"{name} is not audio that can be decoded (supported: {SUPPORTED_FORMATS}): {_reason(exc, notes)}"
        ) from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{name} has an invalid header ({info.samplerate} Hz, {info.channels} channels)")
    return AudioInfo(info.samplerate, info.channels, info.frames, info.format, info.subtype)


def _is_mpeg4(source: AudioSource) -> bool:
    """Whether the bytes start like an MPEG-4 file (an ``ftyp`` box), to say why it is refused."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:12])
        elif isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                head = handle.read(12)
        else:
            source.seek(0)
            head = source.read(12)
    except (OSError, AttributeError, TypeError, ValueError):
        return False
    return head[4:8] == b"ftyp"


def _reason(exc: Exception, notes: Optional[DecoderNotes] = None) -> str:
    """libsndfile's message without the Python object repr it embeds, and what the decoder said (if anything)."""
    text = re.sub(r"^Error opening .*?: ", "", str(exc)).strip()
    if text.startswith("File does not exist or is not a regular file"):  # libsndfile's words for unparseable bytes
        text = "format not recognised, or the data is damaged"
    said = notes.reason() if notes is not None else ""
    if said:
        return f"{text} (the decoder says: {said})" if text else f"the decoder says: {said}"
    return text or "format not recognised, or the data is damaged"


def _excerpt_start(total_frames: int, want_frames: int) -> int:
    """Where a fixed-length excerpt starts: the middle of a long file, where the music is, not its intro."""
    return max(0, (total_frames - want_frames) // 2)


def excerpt_windows(total_frames: int, sample_rate: int, config: FeatureConfig = FeatureConfig()) -> list[tuple[int, int]]:
    """The parts of a ``total_frames``-long file that are heard, as ``[(start, frames), ...]`` at its own rate.

    A file no longer than ``clip_seconds`` is heard whole (``[(0, clip frames)]``: reading stops at its end). Of a longer one, ``excerpt="middle"`` takes
    the central ``clip_seconds``; ``excerpt="windows"`` takes ``excerpt_windows`` windows of
    ``clip_seconds / excerpt_windows`` each, centred at 1/2n, 3/2n, ... of the file: evenly spread, clear
    of the very start and end, never overlapping. Either way ``clip_seconds`` of audio in all.
    """
    want = int(round(config.clip_seconds * sample_rate))
    if total_frames <= want:
        return [(0, want)]  # up to want: reading stops at the end of the file, whatever the header said
    if config.excerpt == "middle":
        return [(_excerpt_start(total_frames, want), want)]
    n = config.excerpt_windows
    width = want // n
    spans = []
    for i in range(n):
        centre = (2 * i + 1) * total_frames // (2 * n)
        start = min(max(0, centre - width // 2), total_frames - width)
        spans.append((start, width))
    return spans


def load_audio(source: AudioSource, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Decode ``source`` to a 1-D float32 array at ``config.sample_rate``, at most ``clip_seconds`` long.

    Of a file longer than the clip length, the parts :func:`excerpt_windows` names, joined in order
    (``config.excerpt``: the central excerpt, or windows spread across the file). Raises
    :class:`AudioError` for empty, undecodable, too-short, too-long (``max_file_seconds``), absurd-rate or
    non-finite audio. Samples are decoded in blocks and mixed to mono block by block, so memory stays
    bounded whatever the channel count. A file cut short after its header (a partial download) is
    analysed from the audio that is present.
    """
    name = _describe(source)
    info = audio_info(source)
    if info.sample_rate > MAX_SAMPLE_RATE:
        raise AudioError(f"{name} claims a sample rate of {info.sample_rate:,} Hz; at most {MAX_SAMPLE_RATE:,} Hz is supported")
    if info.channels > MAX_CHANNELS:
        raise AudioError(f"{name} claims {info.channels} channels; at most {MAX_CHANNELS} are supported")
    if info.duration > config.max_file_seconds:
        raise AudioError(
            f"{name} is {info.duration / 60:.0f} minutes long; the limit is {config.max_file_seconds / 60:.0f} minutes"
        )
    want = int(round(config.clip_seconds * info.sample_rate))
    parts = []
    for start, frames in excerpt_windows(info.frames, info.sample_rate, config):
        part = _read_mono(source, start, frames, info.channels, name, tolerate=bool(start))
        parts.append(part)
        if start and len(part) < frames:
            # A part the header promised is not there (a truncated file): use what decodes from the start.
            parts = [_read_mono(source, 0, want, info.channels, name, tolerate=False)]
            break
    mono = np.concatenate(parts) if len(parts) > 1 else parts[0]
    seconds = len(mono) / info.sample_rate
    if seconds < config.min_seconds <= info.duration:
        raise AudioError(
            f"{name} seems truncated or damaged: its header promises {info.duration:.1f} s of audio, "
            f"but only {seconds:.2f} s could be decoded"
        )
    return prepare_samples(mono, info.sample_rate, config, name=name)


def _read_mono(source: AudioSource, start: int, want: int, channels: int, name: str, tolerate: bool) -> np.ndarray:
    """Up to ``want`` frames from frame ``start``, mixed to mono block by block, ``(n,)`` float32.

    Decoded straight into one float32 array (a mono file) or through one reused block buffer (more
    channels): a fresh array per block costs more than libsndfile's decoding of a 16-bit WAV.
    A decoding error after some audio keeps the audio decoded so far (as a player would); an error
    before any audio raises :class:`AudioError`, or gives an empty array when ``tolerate`` is set.
    """
    block = max(1, min(READ_BLOCK_SAMPLES // max(1, channels), READ_BLOCK_FRAMES))
    mono = np.empty(max(0, want), np.float32)  # only the pages written are ever touched
    scratch = np.empty((block, channels), np.float32) if channels > 1 else None
    got = 0
    try:
        with decoder_messages() as notes, sf.SoundFile(_as_file(source)) as handle:
            if start:
                handle.seek(start)
            while got < want:
                n = min(block, want - got)
                if scratch is None:
                    read = len(handle.read(dtype="float32", out=mono[got : got + n]))
                else:
                    chunk = handle.read(dtype="float32", out=scratch[:n])  # (n', channels)
                    read = len(chunk)
                    _to_mono(chunk, out=mono[got : got + read])
                if read == 0:
                    break
                got += read
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if not got and not tolerate:
            raise AudioError(f"{name} could not be decoded: {_reason(exc, notes)}") from None
    return mono[:got]


def _to_mono(samples: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``(n, channels)`` float32 -> ``(n,)``, the channels' average (into ``out`` if given).

    Summed column by column: numpy's ``mean(axis=1)`` over a short inner axis is ~50x slower (55 ms
    vs 1 ms for 30 s of 44.1 kHz stereo); for two channels the result is bit-identical.
    """
    if out is None:
        mono = samples[:, 0].copy()
    else:
        mono = out
        np.copyto(mono, samples[:, 0])
    for c in range(1, samples.shape[1]):
        mono += samples[:, c]
    if samples.shape[1] > 1:
        mono *= np.float32(1.0 / samples.shape[1])
    return mono


def prepare_samples(samples: np.ndarray, sample_rate: int, config: FeatureConfig = FeatureConfig(), name: str = "audio") -> np.ndarray:
    """Validate decoded samples ``(n,)`` or ``(n, channels)``, mix to mono and resample.

    Pure array-in, array-out: used by :func:`load_audio` and by callers that already hold samples.
    """
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise ParameterError(f"samples must be (n,) or (n, channels), got shape {samples.shape}")
    if sample_rate <= 0:
        raise ParameterError(f"sample_rate must be positive, got {sample_rate}")
    if samples.shape[0] == 0:
        raise AudioError(f"{name} holds no audio samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name} contains NaN or infinite sample values")
    peak = float(np.max(np.abs(samples)))
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(f"{name} holds sample values up to {peak:.3g}, far beyond full scale (1.0): it is not usable audio")
    mono = _to_mono(samples.astype(np.float32, copy=False))  # (n,)
    seconds = mono.shape[0] / sample_rate
    if seconds < config.min_seconds:
        raise AudioError(f"{name} is {seconds:.2f} s long; at least {config.min_seconds:g} s of audio is needed")
    if sample_rate != config.sample_rate:
        mono = soxr.resample(mono, sample_rate, config.sample_rate, quality="HQ").astype(np.float32, copy=False)
    limit = int(round(config.clip_seconds * config.sample_rate))
    return np.ascontiguousarray(mono[:limit])
