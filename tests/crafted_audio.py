"""Audio files made in memory for the bad-input tests: a clip encoded in any format libsndfile writes,
and copies whose headers lie (another sample rate, a data size or a frame count that is not true).

Walks the real chunk and block structure (RIFF chunks, FLAC STREAMINFO): nothing binary is committed.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

SR = 22050


def encode(y: np.ndarray, sr: int = SR, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_chunk(data: bytes, tag: bytes) -> int:
    """Offset of a RIFF chunk's 8-byte header (walks the chunk list, no guessing)."""
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if data[pos : pos + 4] == tag:
            return pos
        pos += 8 + size + (size & 1)
    raise AssertionError(f"no {tag!r} chunk")


def wav_with(data: bytes, rate: int | None = None, data_size: int | None = None) -> bytes:
    """A copy of a WAV file whose header lies: another sample rate and/or data chunk size."""
    out = bytearray(data)
    fmt = wav_chunk(data, b"fmt ")
    channels, _, _, block_align = struct.unpack_from("<HIIH", out, fmt + 10)
    if rate is not None:
        struct.pack_into("<II", out, fmt + 12, rate, rate * block_align)
    if data_size is not None:
        struct.pack_into("<I", out, wav_chunk(data, b"data") + 4, data_size)
    return bytes(out)


def flac_claiming(data: bytes, total_samples: int) -> bytes:
    """A copy of a FLAC file whose STREAMINFO claims ``total_samples`` (36-bit field)."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    out = bytearray(data)
    packed = struct.unpack_from(">Q", out, 8 + 10)[0]  # rate(20) channels(3) bits(5) total(36)
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    struct.pack_into(">Q", out, 8 + 10, packed)
    return bytes(out)
