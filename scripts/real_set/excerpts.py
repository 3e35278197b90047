"""Fixed-length excerpts from the middle of tracks, for --clips and the test fixture.

FLAC, not Ogg: libsndfile gives every Ogg stream a random serial number, so Ogg output would differ from
build to build, and the fixture must be byte-identical every time.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import soundfile as sf

from .judge import MAX_SILENT_FRACTION, silent_fraction
from .output import row_for, write_if_changed
from .sources import Candidate


def excerpt_flac(candidate: Candidate, seconds: float) -> tuple[bytes, float, float, dict]:
    """``seconds`` from the middle of the track as 16-bit FLAC (peaks above full scale are clipped)."""
    with candidate.open() as f:
        rate, total = f.samplerate, f.frames
        length = int(round(seconds * rate))
        if total < length:
            raise ValueError(f"{total / rate:.1f} s long, shorter than the {seconds:g} s excerpt")
        start = (total - length) // 2
        f.seek(start)
        audio = f.read(length, dtype="float32", always_2d=True)
    if len(audio) < length or not np.isfinite(audio).all():
        raise ValueError("the excerpt does not decode cleanly")
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    info = {"sample_rate": rate, "channels": audio.shape[1], "format": "FLAC/PCM_16"}
    return buffer.getvalue(), start / rate, silent_fraction(audio, rate), info


def write_excerpts(out: Path, candidates: list[Candidate], seconds: float) -> tuple[list[dict], list[Candidate]]:
    """An excerpt of each candidate in ``out``: the manifest rows, and the candidates skipped (with reasons)."""
    rows, skipped = [], []
    for candidate in candidates:
        try:
            data, offset, silent, info = excerpt_flac(candidate, seconds)
        except Exception as exc:  # noqa: BLE001
            candidate.reason = f"cannot cut the excerpt: {exc}"
            skipped.append(candidate)
            continue
        if silent > MAX_SILENT_FRACTION:
            candidate.reason = f"the middle {seconds:g} s are {silent:.0%} silence"
            skipped.append(candidate)
            continue
        rel = f"{candidate.soundtrack.name}/{candidate.title}.flac"
        write_if_changed(out / rel, data)
        rows.append(row_for(candidate, rel, hashlib.sha256(data).hexdigest(), seconds, offset, info))
    return rows, skipped
