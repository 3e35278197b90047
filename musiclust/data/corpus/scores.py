"""Reading the default set's scores: parsing, tempo, notes in seconds, repeats, lyrics, instrumentation.

**Parsing** is straight from the corpus file (``forceSource=True``: never music21's pickle cache, so
a result never depends on what an earlier run left in the temp folder).

**Tempo and dynamics.** Times come from the score's own metronome marks (music21's default of
quarter = 120 where a score has none; marks outside 20-400 bpm are clamped). Notes are read part by
part, tied notes merged, grace notes dropped. Every note later gets the same MIDI velocity (see
:mod:`.render`): the scores mark dynamics very unevenly (quartets do, the folk tunes never), so using
them would turn markup habits into a group cue.

**Repeats.** :func:`_window` keeps only the notes sounding inside a clip's window -- so a 30-minute
whole-opus quartet file is never exported or synthesised whole -- and plays a piece again when it is
shorter than the window, as a performer would take a repeat. Repeat signs in the scores are ignored
(every bar is played once per pass), which also avoids music21's "badly formed repeats" failures.

**Lyrics** come from ``music21.text.assembleLyrics`` on the part with the most text, cleaned by
:func:`musiclust.data.lyrics.clean_lyrics` and cut to ``MAX_LYRICS_WORDS`` words; empty when the
score has none (Palestrina's humdrum files carry no ``**text`` spine, Essen tunes and fiddle tunes
no words lines, quartets no text) -- never a placeholder.

**Instrumentation per variant** (:func:`_programs`): ``natural`` takes the GM programs the manifest
row records (the rule in :mod:`.candidates`), ``piano`` puts every part on program 0.

**The notes cache.** :func:`piece_events` keeps each piece's notes (gzip JSON keyed by format,
music21 version and source) so that a piece's second clip and the second variant need no parsing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import warnings
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from musiclust.data.corpus.candidates import _slug, corpus_root
from musiclust.data.lyrics import clean_lyrics
from musiclust.errors import DataError

MAX_LYRICS_WORDS = 200
DEFAULT_TEMPO_QPM = 120.0
TEMPO_RANGE_QPM = (20.0, 400.0)
MIN_NOTE_SECONDS = 0.02
EVENTS_FORMAT = 1
PIANO_PROGRAM = 0

# What parsing or reading third-party score files can raise. music21's own errors derive from
# Music21Exception; its parsers also let plain Python errors escape on malformed input.
_SCORE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    ArithmeticError,
    UnicodeError,
    OSError,
)

Event = tuple[int, float, float]  # MIDI pitch, start (s), end (s)


def _score_error_types() -> tuple[type[BaseException], ...]:
    """music21's own exception base plus the plain errors its parsers let escape."""
    from music21.exceptions21 import Music21Exception

    return (Music21Exception, *_SCORE_ERRORS)


def _load_score(corpus_path: str, number: Optional[int]):
    """The parsed score (a ``music21.stream.Score``), straight from the source file.

    ``forceSource=True`` keeps music21 from reading or writing its pickle cache, so the result
    never depends on what an earlier run left in the temp folder.
    """
    from music21 import converter, stream

    path = corpus_root() / corpus_path
    if not path.is_file():
        raise DataError(f"corpus file not found: {corpus_path} (is music21 10.5.1 installed?)")
    kwargs = {"forceSource": True}
    if number is not None:
        kwargs["number"] = number
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = converter.parse(str(path), **kwargs)
    except _score_error_types() as exc:
        raise DataError(f"cannot parse {corpus_path}{'' if number is None else f' #{number}'}: {type(exc).__name__}: {exc}") from exc
    if isinstance(parsed, stream.Opus):
        raise DataError(f"{corpus_path} holds several tunes: a tune number is needed")
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        return score
    if not isinstance(parsed, stream.Score):
        raise DataError(f"{corpus_path} did not parse into a score ({type(parsed).__name__})")
    return parsed


@dataclass(frozen=True)
class TempoMap:
    """Quarter-length offsets to seconds, piecewise linear between metronome marks."""

    starts_ql: tuple[float, ...]
    starts_s: tuple[float, ...]
    seconds_per_ql: tuple[float, ...]

    def seconds(self, ql: float) -> float:
        index = max(0, bisect_right(self.starts_ql, ql) - 1)
        return self.starts_s[index] + (ql - self.starts_ql[index]) * self.seconds_per_ql[index]


def _tempo_map(score) -> TempoMap:
    """The score's tempo map from music21's metronome-mark boundaries (default quarter = 120)."""
    starts_ql, starts_s, rates = [], [], []
    elapsed = 0.0
    for start, end, mark in score.metronomeMarkBoundaries():
        bpm = mark.getQuarterBPM() or DEFAULT_TEMPO_QPM
        bpm = min(max(float(bpm), TEMPO_RANGE_QPM[0]), TEMPO_RANGE_QPM[1])
        starts_ql.append(float(start))
        starts_s.append(elapsed)
        rates.append(60.0 / bpm)
        elapsed += (float(end) - float(start)) * 60.0 / bpm
    if not starts_ql:
        starts_ql, starts_s, rates = [0.0], [0.0], [60.0 / DEFAULT_TEMPO_QPM]
    return TempoMap(tuple(starts_ql), tuple(starts_s), tuple(rates))


def _tie_type(element) -> Optional[str]:
    tie = getattr(element, "tie", None)
    return tie.type if tie is not None else None


def _part_events(part, tempo: TempoMap) -> list[Event]:
    """The part's notes as (pitch, start s, end s), tied notes merged, grace notes dropped."""
    flat = part.flatten()
    events: list[list] = []
    open_ties: dict[int, list] = {}
    for element in flat.notes:
        length = float(element.quarterLength)
        if length <= 0 or not getattr(element, "pitches", ()):
            continue  # grace notes, unpitched percussion
        start = float(flat.elementOffset(element))
        members = element.notes if hasattr(element, "notes") and element.isChord else (element,)
        for member in members:
            pitch = int(min(max(member.pitch.midi, 0), 127))
            tie = _tie_type(member) or _tie_type(element)
            held = open_ties.get(pitch)
            if tie in ("stop", "continue") and held is not None:
                held[2] = start + length
            else:
                held = [pitch, start, start + length]
                events.append(held)
            if tie in ("start", "continue"):
                open_ties[pitch] = held
            else:
                open_ties.pop(pitch, None)
    return [(p, tempo.seconds(s), tempo.seconds(e)) for p, s, e in events]


def _read_score(score) -> tuple[list[list[Event]], float]:
    """Every part's notes in seconds and the piece's length in seconds."""
    tempo = _tempo_map(score)
    parts = [_part_events(part, tempo) for part in score.parts]
    length = tempo.seconds(float(score.highestTime))
    return parts, length


def _window(parts: list[list[Event]], length_s: float, offset_s: float, duration_s: float) -> list[list[Event]]:
    """Notes sounding in ``[offset, offset + duration)``, with the piece played again when it is short.

    A note already sounding at the window's start is re-struck there; notes are cut at the end.
    """
    if length_s <= 0:
        raise DataError("the piece has no length")
    end = offset_s + duration_s
    passes = max(1, math.ceil(end / length_s - 1e-9))
    clipped: list[list[Event]] = []
    for events in parts:
        kept = []
        for n in range(passes):
            shift = n * length_s
            for pitch, start, stop in events:
                start, stop = start + shift, min(stop + shift, (n + 1) * length_s)
                if stop <= offset_s or start >= end:
                    continue
                new_start, new_stop = max(start, offset_s) - offset_s, min(stop, end) - offset_s
                if new_stop - new_start >= MIN_NOTE_SECONDS:
                    kept.append((pitch, round(new_start, 4), round(new_stop, 4)))
        clipped.append(sorted(kept, key=lambda e: (e[1], e[0], e[2])))
    return clipped


# --------------------------------------------------------------------------------------------------
# Lyrics and composer
# --------------------------------------------------------------------------------------------------


def _score_composer(score) -> str:
    """The first line of the score's composer field; "anonymous" when it names nobody."""
    metadata = score.metadata
    text = str(metadata.composer or "") if metadata is not None else ""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return "anonymous" if not first or first.lower().startswith("anon") else first


def _part_lyrics(part) -> str:
    from music21 import text as m21text

    try:
        return clean_lyrics(m21text.assembleLyrics(part) or "")
    except _score_error_types():
        return ""


def _limit_words(text: str, limit: int = MAX_LYRICS_WORDS) -> str:
    words = text.split()
    return " ".join(words[:limit])


# --------------------------------------------------------------------------------------------------
# Instrumentation per variant, and the notes cache
# --------------------------------------------------------------------------------------------------


def _programs(row: dict, variant: str, n_parts: int) -> list[int]:
    """GM programs per part for the variant; the natural ones come from the manifest row."""
    if variant == "piano":
        return [PIANO_PROGRAM] * n_parts
    try:
        programs = [int(p) for p in str(row.get("instrumentation", "")).split(";") if p.strip()]
    except ValueError:
        raise DataError(f"{row.get('id')}: bad instrumentation {row.get('instrumentation')!r}") from None
    if len(programs) != n_parts or not all(0 <= p <= 127 for p in programs):
        raise DataError(f"{row.get('id')}: instrumentation {row.get('instrumentation')!r} does not fit {n_parts} parts")
    return programs


def _piece_cache_path(corpus_path: str, number: Optional[int], cache_dir: Path) -> tuple[Path, str]:
    """Where a piece's notes are kept, and the key that must match (format, music21 version, source)."""
    from music21 import VERSION_STR

    key = hashlib.sha1(json.dumps([EVENTS_FORMAT, VERSION_STR, corpus_path, number]).encode()).hexdigest()
    return Path(cache_dir) / f"{_slug(Path(corpus_path).stem)[:40]}-{key[:16]}.json.gz", key


def _cached_piece(corpus_path: str, number: Optional[int], cache_dir: Optional[Path]) -> Optional[tuple[list[list[Event]], float]]:
    if cache_dir is None:
        return None
    path, key = _piece_cache_path(corpus_path, number, cache_dir)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("key") != key:
            return None
        parts = [[(int(p), float(s), float(e)) for p, s, e in part] for part in data["parts"]]
        return parts, float(data["length_s"])
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        return None  # a missing or damaged cache entry only costs a parse


def _store_piece(corpus_path: str, number: Optional[int], parts: list[list[Event]], length_s: float, cache_dir: Optional[Path]) -> None:
    """Keep a piece's notes so its other clips and the other variant render without parsing."""
    if cache_dir is None:
        return
    path, key = _piece_cache_path(corpus_path, number, cache_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rounded = [[(p, round(s, 4), round(e, 4)) for p, s, e in part] for part in parts]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(tmp, "wt", encoding="utf-8") as handle:
            json.dump({"key": key, "source": [corpus_path, number], "length_s": length_s, "parts": rounded}, handle)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def piece_events(corpus_path: str, number: Optional[int] = None, cache_dir: Optional[Path] = None) -> tuple[list[list[Event]], float]:
    """All notes of a corpus piece per part, in seconds, and its length in seconds (cached when asked)."""
    cached = _cached_piece(corpus_path, number, cache_dir)
    if cached is not None:
        return cached
    score = _load_score(corpus_path, number)
    try:
        parts, length = _read_score(score)
    except _score_error_types() as exc:
        raise DataError(f"{corpus_path}: cannot read notes: {type(exc).__name__}: {exc}") from exc
    _store_piece(corpus_path, number, parts, length, cache_dir)
    return parts, length
