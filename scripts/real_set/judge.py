"""Which files are tracks: recordings (not tracker modules or MIDI), long enough, decodable, not mostly
silence, not a byte-identical copy of one already taken; each file left out gets its reason.

The cheap checks read headers only (``judge``, all --list does); the build also decodes every kept file
(``check_decoded``). Also here: numbering and titling the kept tracks, and taking some of them.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Optional

import numpy as np

from .catalog import Soundtrack
from .sources import Candidate, list_files, read_info

STREAM_EXTENSIONS = (".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav")
NOT_RECORDINGS = (".xm", ".mod", ".it", ".s3m", ".mtm", ".669", ".umx", ".mid", ".midi", ".kar")
MIN_TRACK_SECONDS = 30.0  # shorter files in a music folder are jingles and stings (victory, defeat)
SILENCE_DB = -50.0  # a 100 ms frame whose mono RMS is below this counts as silence
MAX_SILENT_FRACTION = 0.25  # more silence than this is a sound effect or a padded loop, not a track
FRAME_SECONDS = 0.1


def safe_title(rel: str) -> str:
    stem = os.path.splitext(os.path.basename(rel))[0]
    title = re.sub(r"[^0-9A-Za-z ._()'&,+-]+", "_", stem).strip(" ._") or "track"
    return title[:80]


def frame_levels_db(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = max(1, int(sample_rate * FRAME_SECONDS))
    usable = len(mono) // hop * hop
    if usable == 0:
        return np.array([-200.0])
    frames = mono[:usable].astype(np.float64).reshape(-1, hop)
    return 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-10)


def silent_fraction(audio: np.ndarray, sample_rate: int) -> float:
    """How much of ``audio`` (frames x channels) is in 100 ms frames quieter than SILENCE_DB."""
    return float((frame_levels_db(audio.mean(axis=1), sample_rate) < SILENCE_DB).mean())


def analyse(candidate: Candidate) -> dict:
    """Decodes the whole file: its true length, and how much of it is silence. Raises on a decode error."""
    levels, frames = [], 0
    with candidate.open() as f:
        rate = f.samplerate
        for block in f.blocks(blocksize=rate * 20, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise ValueError("the decoded samples hold NaN or Inf")
            frames += len(block)
            levels.append(frame_levels_db(block.mean(axis=1), rate))
    db = np.concatenate(levels) if levels else np.array([-200.0])
    return {"duration": frames / rate, "silent_fraction": float((db < SILENCE_DB).mean())}


def judge(soundtracks: list[Soundtrack]) -> list[Candidate]:
    """Every file of every soundtrack, with the header-only checks done: kept files get their number
    (from the sorted order, so a later skip leaves a gap instead of renumbering) and title."""
    everything, seen = [], {}
    for soundtrack in soundtracks:
        kept = []
        for rel in list_files(soundtrack):
            candidate = Candidate(soundtrack, rel)
            if candidate.ext in NOT_RECORDINGS:
                candidate.reason = "tracker module or MIDI: notes for a synthesiser, not a recording"
            elif candidate.ext not in STREAM_EXTENSIONS:
                continue  # loop points (.music), text, images: not audio at all
            else:
                candidate.sha256 = hashlib.sha256(candidate.data()).hexdigest()
                try:
                    candidate.info = read_info(candidate)
                except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason to skip
                    candidate.reason = f"cannot decode: {exc}"
                else:
                    if candidate.info["duration"] < MIN_TRACK_SECONDS:
                        candidate.reason = f"{candidate.info['duration']:.1f} s: a jingle, shorter than {MIN_TRACK_SECONDS:.0f} s"
                    elif candidate.sha256 in seen:
                        candidate.reason = f"the same bytes as {seen[candidate.sha256]}"
                    else:
                        seen[candidate.sha256] = candidate.source
                        kept.append(candidate)
                candidate.drop_data()
            everything.append(candidate)
        titles = [safe_title(c.rel) for c in kept]
        width = max(2, len(str(len(kept))))
        for number, (candidate, title) in enumerate(zip(kept, titles), start=1):
            if titles.count(title) > 1:  # the same file name in two sub-folders
                title = safe_title(candidate.rel.replace("/", " - "))
            candidate.number, candidate.title = number, f"{number:0{width}d} {title}"
    return everything


def check_decoded(candidate: Candidate, cache: dict, number: int, total: int) -> dict:
    """The full decode of a kept file (from ``cache`` by its sha256 when it was done before, else done and
    stored there); sets the candidate's reason when it does not decode or is mostly silence."""
    analysis = cache.get(candidate.sha256)
    if analysis is None:
        print(f"[{number}/{total}] decoding {candidate.source}", flush=True)
        try:
            analysis = analyse(candidate)
        except Exception as exc:  # noqa: BLE001
            analysis = {"error": str(exc) or type(exc).__name__}
        cache[candidate.sha256] = analysis
    candidate.drop_data()
    if "error" in analysis:
        candidate.reason = f"cannot decode: {analysis['error']}"
    elif analysis["silent_fraction"] > MAX_SILENT_FRACTION:
        candidate.reason = f"{analysis['silent_fraction']:.0%} of it is silence"
    return analysis


def kept_per_soundtrack(candidates: list[Candidate], limit: Optional[int]) -> list[Candidate]:
    """The kept files, soundtrack by soundtrack, at most the first ``limit`` of each."""
    chosen = []
    for soundtrack in sorted({c.soundtrack.name for c in candidates}):
        kept = [c for c in candidates if c.soundtrack.name == soundtrack and not c.reason]
        chosen.extend(kept[:limit] if limit else kept)
    return chosen


def spread(kept: list[Candidate], count: int) -> list[Candidate]:
    """``count`` tracks spread evenly over the sorted list (the first and the last included)."""
    if len(kept) <= count:
        return kept
    if count == 1:
        return kept[:1]
    return [kept[round(i * (len(kept) - 1) / (count - 1))] for i in range(count)]
