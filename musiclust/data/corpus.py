"""The default data set: real compositions from the music21 corpus, rendered to audio on this machine.

No recorded music can be downloaded here, but PyPI's ``music21`` ships a corpus of scores. This
module picks clips from it by a fixed rule (the *manifest*, committed as ``data/manifest.csv``) and
renders each clip with a General MIDI soundfont into ``data/default/<variant>/<id>.wav``.

Groups (kinds of music a listener would call different), ``PER_GROUP`` = 70 clips each:

========================  ===============================================================================
``bach_chorale``          J. S. Bach's four-part chorales (Riemenschneider list; SATB settings only)
``palestrina``            Palestrina mass movements (humdrum); at most one clip per mass, for variety
``monteverdi``            Monteverdi's five-voice madrigals, books 3-5 (the ``.mxl``, not the analyses)
``trecento``              14th-century Italian polyphony (madrigals, ballate, mass movements, motets)
``string_quartet``        Beethoven, Mozart and Haydn string quartet movements (not Mozart's K. 545 sonata)
``german_folk``           German songs from the Essen folksong collection (ABC, one tune at a time)
``fiddle_tune``           Reels, jigs and hornpipes from Ryan's Mammoth Collection (ABC)
========================  ===============================================================================

**The manifest rule** (:func:`build_manifest`) is deterministic: candidates come from sorted corpus
paths (and sorted tune numbers), are shuffled by a seeded ``random.Random`` per group, and are taken
in that order; a candidate is skipped (deterministically, with its reason) when it fails to parse,
when its timing cannot be read, when it does not have the expected layout (chorales: four SATB parts;
quartets: four parts) or when it is shorter than ``MIN_PIECE_SECONDS``. Interchangeable candidates
share a dedupe key (a Palestrina mass, a Trecento piece in two versions, an Essen song title that
recurs in several collections): only the first in seeded order is used. Where a group has fewer
usable pieces than ``PER_GROUP`` (quartets, madrigals), the longest pieces contribute a second clip
from their middle; both clips carry the same ``piece_id`` so a validation split can keep a piece
on one side. Nothing depends on the machine or the time; the rule does depend on the music21
version (10.5.1 made the committed manifest).

**Clip duration is not a cue.** Every clip lasts exactly ``CLIP_SECONDS`` (30 s). A piece shorter
than that is played through twice, as a performer would take a repeat, and cut at 30 s; pieces
shorter than ``MIN_PIECE_SECONDS`` (15 s), which would need a third pass, are skipped. Repeat signs
in the scores are ignored (every bar is played once per pass), which also avoids music21's
"badly formed repeats" failures. Without this rule clip length alone identifies groups (Essen tunes
average ~21 s, most chorales < 30 s, quartets always 30 s).

**Tempo and dynamics.** Times come from the score's own metronome marks (music21's default of
quarter = 120 where a score has none; marks outside 20-400 bpm are clamped). Every note gets the
same MIDI velocity (``VELOCITY``) in every group: the scores mark dynamics very unevenly (quartets
do, the folk tunes never), so using them would turn markup habits into a group cue. Clips are
peak-normalised to ``PEAK_DBFS`` (-1 dBFS) so loudness is not a cue either.

**Instrumentation** (GM program numbers, 0-based as in MIDI program-change data), set explicitly on
every part -- nothing is inherited from music21's guess from part names:

* ``natural`` -- plausible forces for each kind of music, recorded per part in the manifest's
  ``instrumentation`` column:

  - chorales and Palestrina: 52 Choir Aahs on every voice (choral music sung by a choir);
  - Monteverdi: 53 Voice Oohs (madrigals are sung one singer per part), continuo parts on
    6 Harpsichord;
  - Trecento: 53 Voice Oohs on texted parts, 74 Recorder on untexted ones (tenors and contratenors
    without text are commonly played on instruments);
  - quartets: 40 Violin, 40 Violin, 41 Viola, 42 Cello (by part name, else by position);
  - German folk songs: 53 Voice Oohs (they are songs; the collection has no words to sing);
  - fiddle tunes: 40 Violin (in the Irish and Scottish tradition the fiddle *is* the violin; GM's
    110 "Fiddle" patch would add a timbre cue that no performance has).

  Known confound: timbre alone separates some groups here (choir vs. solo voices vs. strings), so a
  model can score well on this variant without hearing style. Voices, choir and violin are shared
  across groups on purpose so that timbre does not separate all of them.
* ``piano`` -- every part on program 0 (Acoustic Grand Piano). Comparing a model on both variants
  tells how much of its clustering is style and how much is timbre.

**Rendering** (:func:`render_clip`): the score is parsed (music21, never from a pickle cache), notes
are read part by part (ties merged, grace notes dropped), only the notes sounding inside the clip's
window are kept -- so a 30-minute whole-opus quartet file is never exported or synthesised whole --
and the window is synthesised with pretty_midi + pyfluidsynth at 22,050 Hz mono, cut or padded to
the exact length, faded (5 ms in, 50 ms out), peak-normalised and written as 16-bit PCM WAV through
a temporary file and ``os.replace``. Each clip runs in its own forked process that is killed after
``timeout_s`` and whose file size is capped by ``RLIMIT_FSIZE`` (the ``fluidsynth`` command line
once wrote 23 GB for one quartet; the in-memory path is also capped by the number of samples).
:func:`build_default_set` runs pieces in parallel worker processes (a piece's clips in turn, largest
source files first), skips clips that exist and are valid, and keeps each piece's notes in
``data/cache/corpus_events`` so that a piece's second clip and the second variant need no parsing.
Each worker loads the soundfont and imports music21/pretty_midi once; the forked clip processes
inherit them (that cut the CPU time of a full build from ~560 s to ~210 s, natural, and ~100 s,
piano). Rendering is bit-identical from run to run.

Lyrics come from ``music21.text.assembleLyrics`` on the part with the most text, cleaned by
:func:`musiclust.data.lyrics.clean_lyrics` and cut to ``MAX_LYRICS_WORDS`` words; empty when the
score has none (Palestrina's humdrum files carry no ``**text`` spine, Essen tunes and fiddle tunes
no words lines, quartets no text) -- never a placeholder.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import resource
import sys
import time
import warnings
from bisect import bisect_right
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from musiclust.data.lyrics import clean_lyrics, guess_language
from musiclust.errors import AudioError, DataError, MusiclustError, ParameterError
from musiclust.paths import CORPUS_EVENT_CACHE, DEFAULT_AUDIO_ROOT, DEFAULT_MANIFEST

__all__ = [
    "BuildReport",
    "ClipOutcome",
    "GROUPS",
    "MANIFEST_COLUMNS",
    "VARIANTS",
    "build_default_set",
    "build_group_rows",
    "build_manifest",
    "corpus_root",
    "find_soundfont",
    "list_candidates",
    "read_manifest",
    "render_clip",
    "selection_order",
    "write_manifest",
]

DEFAULT_ROOT = DEFAULT_AUDIO_ROOT
DEFAULT_EVENT_CACHE = CORPUS_EVENT_CACHE

SAMPLE_RATE = 22_050
CLIP_SECONDS = 30.0
MIN_PIECE_SECONDS = 15.0
PER_GROUP = 70
MANIFEST_SEED = 20_250
PEAK_DBFS = -1.0
VELOCITY = 80
MAX_LYRICS_WORDS = 200
DEFAULT_TEMPO_QPM = 120.0
TEMPO_RANGE_QPM = (20.0, 400.0)
MIN_NOTE_SECONDS = 0.02
FADE_IN_SECONDS = 0.005
FADE_OUT_SECONDS = 0.05
SILENCE_PEAK = 1e-6
EVENTS_FORMAT = 1
# 30 s of 16-bit mono at 22,050 Hz is 1,323,044 bytes; twice that leaves room and still stops a runaway.
DEFAULT_MAX_BYTES = 3_000_000
PIANO_PROGRAM = 0

VARIANTS = ("natural", "piano")
MANIFEST_COLUMNS = (
    "id",
    "piece_id",
    "group",
    "composer",
    "title",
    "corpus_path",
    "number",
    "offset_s",
    "duration_s",
    "instrumentation",
    "lyrics",
    "lyrics_language",
)
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
)

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


# --------------------------------------------------------------------------------------------------
# Candidates: which corpus files (and ABC tune numbers) each group may use. Listing is cheap: it only
# reads directory listings and plain-text headers, never parses a score.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One piece a group may use, before it is parsed."""

    group: str
    corpus_path: str  # relative to the music21 corpus root, with forward slashes
    number: Optional[int]  # tune number inside an ABC file holding many tunes
    piece_id: str  # also the id of the piece's first clip
    title: str
    composer: str
    dedupe_key: str  # candidates sharing it are interchangeable: only the first in seeded order is used


def _score_error_types() -> tuple[type[BaseException], ...]:
    """music21's own exception base plus the plain errors its parsers let escape."""
    from music21.exceptions21 import Music21Exception

    return (Music21Exception, *_SCORE_ERRORS)


def corpus_root() -> Path:
    """The folder holding music21's bundled corpus (``.../site-packages/music21/corpus``)."""
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def _slug(text: str) -> str:
    """A filesystem-safe fragment: letters, digits, ``_`` and ``-`` only."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return re.sub(r"_+", "_", slug)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _bach_candidates(root: Path) -> list[Candidate]:
    """Chorales from music21's Riemenschneider list (BWV -> title), where the corpus has the file."""
    from music21.corpus.chorales import ChoraleListRKBWV

    titles: dict[str, str] = {}
    for entry in ChoraleListRKBWV().byRiemenschneider.values():
        titles.setdefault(str(entry["bwv"]), str(entry["title"]))
    files = {p.stem: p for p in sorted((root / "bach").glob("bwv*.mxl"))}
    out = []
    for bwv in sorted(titles):
        path = files.get(f"bwv{bwv}")
        if path is None:
            continue
        piece = f"bach_chorale-{_slug('bwv' + bwv)}"
        out.append(Candidate("bach_chorale", _rel(path, root), None, piece, f"{titles[bwv]} (BWV {bwv})", "J. S. Bach", piece))
    return out


def _humdrum_header(path: Path) -> dict[str, str]:
    """The ``!!!KEY: value`` reference records at the top of a humdrum file."""
    header: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("!!!"):
                break
            key, _, value = line[3:].partition(":")
            header[key.strip()] = value.strip()
    return header


def _palestrina_candidates(root: Path) -> list[Candidate]:
    """Mass movements; section files (``Credo_05_b``) belong to their movement; one clip per mass."""
    out = []
    for path in sorted((root / "palestrina").glob("*.krn")):
        header = _humdrum_header(path)
        mass = header.get("OPR", path.stem)
        movement = header.get("OTL", path.stem)
        piece = f"palestrina-{_slug(re.sub(r'_[a-z]$', '', path.stem))}"
        out.append(Candidate("palestrina", _rel(path, root), None, piece, f"{mass}: {movement}", "G. P. da Palestrina", f"palestrina:{mass}"))
    return out


def _monteverdi_candidates(root: Path) -> list[Candidate]:
    """Madrigals as MusicXML (``madrigal.B.N.mxl``); the ``_old`` duplicate and the analyses are left out."""
    out = []
    for path in sorted((root / "monteverdi").glob("madrigal.*.mxl")):
        match = re.fullmatch(r"madrigal\.(\d+)\.(\d+)", path.stem)
        if not match:
            continue
        piece = f"monteverdi-{_slug(path.stem)}"
        title = f"Madrigali, libro {match.group(1)}, no. {match.group(2)}"
        out.append(Candidate("monteverdi", _rel(path, root), None, piece, title, "C. Monteverdi", piece))
    return out


_TRECENTO_COMPOSERS = {"Jacopo": "Jacopo da Bologna", "Giovanni": "Giovanni da Cascia", "Piero": "Magister Piero"}


def _trecento_title(stem: str) -> str:
    title = re.sub(r"^(?:PMFC_[\d_]+[a-z]?|Fava)[-_]", "", stem)
    title = re.sub(r"^(?:Jacopo|Giovanni|Piero)[-_]\d*[a-z]?[-_]", "", title)
    return re.sub(r"[\s_-]+", " ", title).strip()


def _trecento_candidates(root: Path) -> list[Candidate]:
    """Trecento pieces; ``_bak`` copies dropped, one file per stem (``.xml`` before ``.mxl``).

    Two versions of one piece (``03a``/``03b``, ``Generi a``/``Generi b``) share a dedupe key.
    """
    by_stem: dict[str, Path] = {}
    for path in sorted((root / "trecento").iterdir()):
        if path.suffix not in (".xml", ".mxl") or path.stem.endswith("_bak"):
            continue
        if path.stem not in by_stem or path.suffix == ".xml":
            by_stem[path.stem] = path
    out = []
    for stem, path in sorted(by_stem.items()):
        version_free = re.sub(r"\s[ab]$", "", re.sub(r"(?<=\d)[ab]\b", "", stem))
        composer = next((name for key, name in _TRECENTO_COMPOSERS.items() if f"_{key}" in stem or f"-{key}" in stem), "")
        piece = f"trecento-{_slug(stem)}"
        out.append(Candidate("trecento", _rel(path, root), None, piece, _trecento_title(stem), composer, f"trecento:{version_free}"))
    return out


def _quartet_title(rel: str) -> str:
    parts = rel.split("/")
    work = Path(parts[1]).stem if len(parts) > 1 else rel
    if re.fullmatch(r"k\d+", work):
        work_name = f"K. {work[1:]}"
    else:
        work_name = re.sub(r"opus(\d+)(?:no(\d+))?", lambda m: f"op. {m.group(1)}" + (f" no. {m.group(2)}" if m.group(2) else ""), work)
    name = "Große Fuge" if work == "opus133" else "String Quartet"
    if len(parts) == 3:
        movement = re.sub(r"\D", "", Path(parts[2]).stem)
        return f"{name} {work_name}, mvt. {movement}"
    return f"{name} {work_name}" + ("" if work == "opus133" else " (all movements, one file)")


def _quartet_candidates(root: Path) -> list[Candidate]:
    """Every quartet file as MusicXML (``.krn`` copies dropped); Mozart's K. 545 is a piano sonata."""
    composers = {"beethoven": "L. van Beethoven", "haydn": "J. Haydn", "mozart": "W. A. Mozart"}
    out = []
    for folder, composer in composers.items():
        for path in sorted((root / folder).rglob("*.mxl")):
            rel = _rel(path, root)
            if rel.startswith("mozart/k545/"):
                continue
            piece = f"string_quartet-{_slug(rel[: -len(path.suffix)].replace('/', '-'))}"
            out.append(Candidate("string_quartet", rel, None, piece, _quartet_title(rel), composer, piece))
    return out


def _abc_tunes(path: Path) -> list[dict[str, str]]:
    """``X:`` number and the ``T:``/``O:`` header fields of every tune in an ABC file (first T: wins)."""
    tunes: list[dict[str, str]] = []
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            field_name, _, value = line.partition(":")
            field_name = field_name.strip()
            if field_name == "X" and value.strip().isdigit():
                tunes.append({"X": value.strip()})
            elif tunes and field_name in ("T", "O") and field_name not in tunes[-1]:
                tunes[-1][field_name] = value.strip()
    return tunes


_ESSEN_GERMAN_FILES = re.compile(r"(altdeu|boehme|erk|fink|kinder|zuccal)\d*\.abc")


def _essen_candidates(root: Path) -> list[Candidate]:
    """Tunes of the German collections whose origin line names Germany; one per song title."""
    out = []
    for path in sorted((root / "essenFolksong").glob("*.abc")):
        if not _ESSEN_GERMAN_FILES.fullmatch(path.name):
            continue
        for tune in _abc_tunes(path):
            if "Deutschland" not in tune.get("O", ""):
                continue
            number = int(tune["X"])
            title = tune.get("T", f"{path.stem} {number}").strip()
            piece = f"german_folk-{_slug(path.stem)}-{number}"
            key = "german_folk:" + re.sub(r"[^a-z]", "", title.lower())
            out.append(Candidate("german_folk", _rel(path, root), number, piece, title, "traditional (German)", key))
    return sorted(out, key=lambda c: (c.corpus_path, c.number or 0))


def _fiddle_candidates(root: Path) -> list[Candidate]:
    """Ryan's Mammoth Collection: one dance tune per file."""
    out = []
    for path in sorted((root / "ryansMammoth").glob("*.abc")):
        tunes = _abc_tunes(path)
        title = tunes[0].get("T", path.stem) if tunes else path.stem
        piece = f"fiddle_tune-{_slug(path.stem)}"
        out.append(Candidate("fiddle_tune", _rel(path, root), None, piece, title, "traditional", piece))
    return out


# --------------------------------------------------------------------------------------------------
# Natural instrumentation per group (see the module docstring for the reasons).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    """What the instrumentation rule may look at: the part's name and whether it carries text."""

    name: str
    has_text: bool


def _all(program: int) -> Callable[[Sequence[PartInfo]], list[int]]:
    return lambda parts: [program] * len(parts)


def _monteverdi_programs(parts: Sequence[PartInfo]) -> list[int]:
    return [6 if "continuo" in p.name.lower() else 53 for p in parts]


def _trecento_programs(parts: Sequence[PartInfo]) -> list[int]:
    return [53 if p.has_text else 74 for p in parts]


def _quartet_programs(parts: Sequence[PartInfo]) -> list[int]:
    by_position = (40, 40, 41, 42)
    programs = []
    for index, part in enumerate(parts):
        name = part.name.lower()
        if "cello" in name or name.startswith("vc"):
            programs.append(42)
        elif "viola" in name or name.startswith("vla"):
            programs.append(41)
        elif "viol" in name:
            programs.append(40)
        else:
            programs.append(by_position[min(index, 3)])
    return programs


# --------------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """A kind of music: where its candidates come from, how it is checked and instrumented."""

    name: str
    list_candidates: Callable[[Path], list[Candidate]]
    natural_programs: Callable[[Sequence[PartInfo]], list[int]]
    language: str  # language of its lyrics when the guess has too little evidence ("" if none)
    part_count: Optional[int] = None  # required number of parts, when the group has a fixed layout
    part_names: Optional[tuple[str, ...]] = None  # required part names (case-insensitive), in order
    second_clips: bool = False  # long pieces may give a second clip when the group is short of pieces


GROUPS: tuple[GroupSpec, ...] = (
    GroupSpec("bach_chorale", _bach_candidates, _all(52), "de", 4, ("soprano", "alto", "tenor", "bass")),
    GroupSpec("palestrina", _palestrina_candidates, _all(52), "la"),
    GroupSpec("monteverdi", _monteverdi_candidates, _monteverdi_programs, "it", second_clips=True),
    GroupSpec("trecento", _trecento_candidates, _trecento_programs, ""),
    GroupSpec("string_quartet", _quartet_candidates, _quartet_programs, "", 4, second_clips=True),
    GroupSpec("german_folk", _essen_candidates, _all(53), "de"),
    GroupSpec("fiddle_tune", _fiddle_candidates, _all(40), ""),
)
_GROUP_BY_NAME = {g.name: g for g in GROUPS}


def _group(name: str) -> GroupSpec:
    try:
        return _GROUP_BY_NAME[name]
    except KeyError:
        raise ParameterError(f"unknown group {name!r}; groups are {', '.join(_GROUP_BY_NAME)}") from None


def list_candidates(group: str, root: Optional[Path] = None) -> list[Candidate]:
    """All candidates of ``group`` in sorted corpus order (cheap: no score is parsed)."""
    return _group(group).list_candidates(root or corpus_root())


def selection_order(group: str, root: Optional[Path] = None) -> list[Candidate]:
    """The group's candidates in the order the rule tries them: sorted, then a seeded shuffle.

    ``random.Random`` seeded with a string is reproducible across machines, Python runs and hash
    seeds, so the order depends only on the corpus listing.
    """
    ordered = sorted(list_candidates(group, root), key=lambda c: (c.corpus_path, c.number or 0))
    random.Random(f"{MANIFEST_SEED}:{group}").shuffle(ordered)
    return ordered


# --------------------------------------------------------------------------------------------------
# Reading scores: parsing, tempo map, notes.
# --------------------------------------------------------------------------------------------------


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
# The manifest rule
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PieceInfo:
    """What parsing a candidate tells the rule."""

    length_s: float
    programs: tuple[int, ...]
    lyrics: str
    language: str
    composer: str


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


def _check_layout(spec: GroupSpec, names: list[str]) -> None:
    if spec.part_count is not None and len(names) != spec.part_count:
        raise DataError(f"has {len(names)} parts, the group needs {spec.part_count}")
    if spec.part_names is not None and [n.lower().strip(". ") for n in names] != list(spec.part_names):
        raise DataError(f"parts {names} are not {list(spec.part_names)}")


def probe(candidate: Candidate) -> PieceInfo:
    """Parse a candidate and check it is usable; raises :class:`DataError` with the reason if not."""
    spec = _group(candidate.group)
    score = _load_score(candidate.corpus_path, candidate.number)
    names = [str(part.partName or "") for part in score.parts]
    _check_layout(spec, names)
    try:
        parts, length = _read_score(score)
    except _score_error_types() as exc:
        raise DataError(f"cannot read notes: {type(exc).__name__}: {exc}") from exc
    if not any(parts):
        raise DataError("has no notes")
    if length < MIN_PIECE_SECONDS:
        raise DataError(f"lasts {length:.1f} s, shorter than {MIN_PIECE_SECONDS:.0f} s")
    if not any(_window(parts, length, 0.0, CLIP_SECONDS)):
        raise DataError("no notes in the first clip")
    texts = [_part_lyrics(part) for part in score.parts]
    lyrics = _limit_words(max(texts, key=len, default=""))
    language = (guess_language(lyrics) or spec.language) if lyrics else ""
    programs = spec.natural_programs([PartInfo(name, bool(t)) for name, t in zip(names, texts)])
    composer = candidate.composer or _score_composer(score)
    return PieceInfo(round(length, 3), tuple(programs), lyrics, language, composer)


def _row(candidate: Candidate, info: PieceInfo, offset_s: float) -> dict:
    clip_id = candidate.piece_id if offset_s == 0 else f"{candidate.piece_id}-t{int(offset_s)}"
    return {
        "id": clip_id,
        "piece_id": candidate.piece_id,
        "group": candidate.group,
        "composer": info.composer,
        "title": candidate.title,
        "corpus_path": candidate.corpus_path,
        "number": candidate.number,
        "offset_s": float(offset_s),
        "duration_s": CLIP_SECONDS,
        "instrumentation": ";".join(str(p) for p in info.programs),
        "lyrics": info.lyrics,
        "lyrics_language": info.language,
    }


def _plan_group(spec: GroupSpec, per_group: int, skipped: Optional[dict[str, str]], log: Callable[[str], None]) -> list[dict]:
    """Rows of one group: first clips in seeded order, then second clips from the longest pieces."""
    chosen: list[tuple[Candidate, PieceInfo]] = []
    used_keys: set[str] = set()
    for candidate in selection_order(spec.name):
        if len(chosen) >= per_group:
            break
        if candidate.dedupe_key in used_keys:
            continue
        try:
            info = probe(candidate)
        except DataError as exc:
            if skipped is not None:
                skipped[candidate.piece_id] = str(exc)
            continue
        used_keys.add(candidate.dedupe_key)
        chosen.append((candidate, info))
    rows = [_row(c, i, 0.0) for c, i in chosen]
    if spec.second_clips and len(chosen) < per_group:
        long_pieces = sorted((p for p in chosen if p[1].length_s >= 2 * CLIP_SECONDS), key=lambda p: (-p[1].length_s, p[0].piece_id))
        for candidate, info in long_pieces[: per_group - len(chosen)]:
            rows.append(_row(candidate, info, float(int(info.length_s / 2))))
    log(f"{spec.name}: {len(rows)} clips from {len(chosen)} pieces")
    return sorted(rows, key=lambda r: r["id"])


def build_group_rows(group: str, per_group: int = PER_GROUP, skipped: Optional[dict[str, str]] = None) -> list[dict]:
    """The rule's rows for one group (the manifest's rows of that group when ``per_group`` is the default).

    With a smaller ``per_group`` the first clips are a prefix of the same seeded order, so they must
    equal the manifest's rows of the same ids: that is how the tests check the committed manifest.
    """
    if per_group < 1:
        raise ParameterError("per_group must be at least 1")
    return _plan_group(_group(group), per_group, skipped, lambda _: None)


def build_manifest(per_group: int = PER_GROUP, skipped: Optional[dict[str, str]] = None, log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """The default set's rows, group by group (see the module docstring for the rule).

    Parses only as many candidates as it needs (a few minutes for all groups). ``skipped``, when
    given, receives ``piece_id -> reason`` for every candidate the rule passed over.
    """
    if per_group < 1:
        raise ParameterError("per_group must be at least 1")
    rows: list[dict] = []
    for spec in GROUPS:
        rows.extend(_plan_group(spec, per_group, skipped, log))
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise DataError("the manifest rule produced duplicate ids")
    return rows


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def write_manifest(path: Path = DEFAULT_MANIFEST, rows: Optional[list[dict]] = None, log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Write the manifest CSV (UTF-8, header first) atomically; builds the rows when none are given."""
    rows = build_manifest(log=log) if rows is None else rows
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format_cell(row.get(k)) for k in MANIFEST_COLUMNS})
    os.replace(tmp, path)
    return rows


def read_manifest(path: Path = DEFAULT_MANIFEST) -> list[dict]:
    """Manifest rows as dicts with typed ``number`` (int or None), ``offset_s`` and ``duration_s``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path.name} lacks the columns {sorted(missing)}")
        return [_typed_row(row, path.name, n) for n, row in enumerate(reader, start=2)]


def _typed_row(row: dict, source: str = "row", line: int = 0) -> dict:
    """A copy of ``row`` with numeric fields converted; raises :class:`DataError` on bad values."""
    out = dict(row)
    try:
        number = row.get("number")
        out["number"] = None if number in (None, "") else int(number)
        out["offset_s"] = float(row.get("offset_s") or 0.0)
        out["duration_s"] = float(row["duration_s"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source}:{line}: bad number/offset_s/duration_s ({exc})") from None
    if not re.fullmatch(r"[A-Za-z0-9_-]+", str(out.get("id", ""))):
        raise DataError(f"{source}:{line}: id {out.get('id')!r} is not filesystem-safe")
    if not 0 < out["duration_s"] <= CLIP_SECONDS or out["offset_s"] < 0:
        raise DataError(f"{source}:{line}: duration_s must be in (0, {CLIP_SECONDS:.0f}] and offset_s >= 0")
    return out


# --------------------------------------------------------------------------------------------------
# Rendering one clip
# --------------------------------------------------------------------------------------------------


def find_soundfont() -> Path:
    """The General MIDI soundfont to render with: FluidR3_GM, else TimGM6mb."""
    for candidate in SOUNDFONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(p) for p in SOUNDFONT_CANDIDATES)
    raise DataError(
        f"no General MIDI soundfont found (looked for {looked}); install the Debian package "
        "fluid-soundfont-gm: apt-get install -y --no-install-recommends fluid-soundfont-gm"
    )


def _check_synth_available() -> None:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth loads libfluidsynth on import)
    except (ImportError, OSError) as exc:
        raise DataError(
            f"pyfluidsynth cannot load libfluidsynth ({exc}); install the Debian package libfluidsynth3 "
            "and the PyPI package pyfluidsynth"
        ) from None


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


def clip_events(row: dict, cache_dir: Optional[Path] = None) -> list[list[Event]]:
    """The notes of the clip a manifest row names, per part, in seconds from the clip's start."""
    row = _typed_row(row)
    parts, length = piece_events(row["corpus_path"], row["number"], cache_dir)
    return _window(parts, length, row["offset_s"], row["duration_s"])


# One loaded soundfont per pool worker: the clip processes forked from the worker inherit it instead of
# reading the 145 MB file again (that read cost ~0.15 s CPU and ~0.4 s wall per clip on a busy machine).
# The worker itself never plays a note, so every clip starts from a silent, freshly loaded synthesizer.
_WORKER_SYNTHS: dict[str, tuple[object, int]] = {}


def _worker_synth(sf2_path: Path) -> tuple[object, int]:
    """(fluidsynth.Synth, soundfont id) loaded once in this process."""
    key = str(sf2_path)
    if key not in _WORKER_SYNTHS:
        import fluidsynth

        synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
        sfid = synth.sfload(key)
        if sfid < 0:
            raise DataError(f"fluidsynth cannot load the soundfont {sf2_path}")
        _WORKER_SYNTHS[key] = (synth, sfid)
    return _WORKER_SYNTHS[key]


def _synthesize(parts: list[list[Event]], programs: list[int], duration_s: float, sf2_path: Path, synth: Optional[tuple[object, int]] = None) -> np.ndarray:
    """Mono float audio of exactly ``duration_s`` seconds, faded and peak-normalised."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for events, program in zip(parts, programs):
        instrument = pretty_midi.Instrument(program=program)
        instrument.notes = [pretty_midi.Note(velocity=VELOCITY, pitch=p, start=s, end=e) for p, s, e in events]
        midi.instruments.append(instrument)
    if midi.get_end_time() > duration_s + 1e-6:
        raise AudioError(f"notes run to {midi.get_end_time():.1f} s, past the clip's {duration_s:.1f} s")
    n_samples = int(round(duration_s * SAMPLE_RATE))
    if synth is None:
        audio = midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=str(sf2_path), normalize=False)
    else:
        audio = midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=synth[0], sfid=synth[1], normalize=False)
    audio = np.asarray(audio, dtype=np.float64)[:n_samples]
    audio = np.pad(audio, (0, n_samples - audio.size)) if audio.size < n_samples else audio
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not np.isfinite(peak) or peak <= SILENCE_PEAK:
        raise AudioError("the rendered clip is silent")
    fade_in, fade_out = int(FADE_IN_SECONDS * SAMPLE_RATE), int(FADE_OUT_SECONDS * SAMPLE_RATE)
    audio[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    audio[-fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    audio *= 10 ** (PEAK_DBFS / 20) / float(np.max(np.abs(audio)))
    return audio.astype(np.float32)


@dataclass(frozen=True)
class _ClipJob:
    """Everything the clip process needs."""

    row: dict
    variant: str
    sf2_path: Path
    tmp_path: Path
    max_bytes: int
    cache_dir: Optional[Path]
    synth: Optional[tuple[object, int]] = None  # a soundfont already loaded in the parent, inherited by fork


def _render_to_file(job: _ClipJob) -> None:
    import soundfile

    parts = clip_events(job.row, job.cache_dir)
    programs = _programs(job.row, job.variant, len(parts))
    audio = _synthesize(parts, programs, job.row["duration_s"], job.sf2_path, job.synth)
    soundfile.write(str(job.tmp_path), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _child(conn, job: _ClipJob) -> None:
    """Runs in the clip's own process: render, report ("ok", "") or ("error", reason) through ``conn``."""
    # Python ignores SIGXFSZ, so writing past the cap fails with OSError (EFBIG) instead of filling the disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (job.max_bytes, job.max_bytes))
    try:
        _render_to_file(job)
        conn.send(("ok", ""))
    # libsndfile and the fluidsynth wrapper report their failures as RuntimeError
    except (MusiclustError, RuntimeError, *_score_error_types()) as exc:
        conn.send(("error", _failure_reason(exc, job.tmp_path, job.max_bytes)))
    finally:
        conn.close()


def _failure_reason(exc: BaseException, tmp_path: Path, max_bytes: int) -> str:
    """The child's error message; a write stopped by the size cap says so (libsndfile only says "System error")."""
    try:
        capped = tmp_path.stat().st_size >= max_bytes
    except OSError:
        capped = False
    if capped:
        return f"output reached the {max_bytes}-byte size cap and was stopped ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def _stop(process: multiprocessing.Process) -> None:
    process.join(timeout=1.0)
    if process.is_alive():
        process.terminate()
        process.join(timeout=2.0)
    if process.is_alive():
        process.kill()
        process.join(timeout=2.0)


def _preload_modules() -> None:
    """Import what a clip process needs *before* forking it, so each clip does not pay ~1.2 s of imports.

    The first full build spent most of its per-clip CPU time importing music21 and pretty_midi in
    every forked child; imported once in the parent, they are inherited for free.
    """
    import music21.converter  # noqa: F401
    import music21.text  # noqa: F401
    import pretty_midi  # noqa: F401
    import soundfile  # noqa: F401


def _run_isolated(job: _ClipJob, timeout_s: float) -> None:
    """Render in a forked process that is killed after ``timeout_s``; raises AudioError on failure."""
    _preload_modules()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, job))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise AudioError(f"timed out after {timeout_s:g} s (render process killed)")
        try:
            status, reason = receiver.recv()
        except EOFError:
            process.join(timeout=2.0)
            raise AudioError(f"render process died (exit code {process.exitcode})") from None
    finally:
        receiver.close()
        _stop(process)
    if status != "ok":
        raise AudioError(reason)


@dataclass(frozen=True)
class ClipOutcome:
    """One clip's result: ``reason`` is empty when it was built or already there."""

    id: str
    seconds: float
    reason: str = ""


def render_clip(
    row: dict,
    variant: str,
    sf2_path: Optional[Path],
    out_path: Path,
    timeout_s: float = 60.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    cache_dir: Optional[Path] = None,
    share_synth: bool = False,
) -> ClipOutcome:
    """Render one manifest row to ``out_path`` (22,050 Hz mono 16-bit WAV, exactly ``duration_s``).

    Work happens in a forked process that is killed after ``timeout_s`` seconds and may write at most
    ``max_bytes`` bytes; the file appears atomically (temporary file + ``os.replace``) only when it is
    complete and valid. ``sf2_path=None`` finds the soundfont. ``cache_dir`` keeps the piece's notes
    so its other clips and the other variant render without parsing. ``share_synth`` loads the
    soundfont once in this process (it then stays in memory) for the clip processes to inherit; the
    build's workers use it. Raises :class:`AudioError` (timeout, size cap, silent or failed render),
    :class:`DataError` (bad row, missing soundfont) or :class:`ParameterError`.
    """
    if variant not in VARIANTS:
        raise ParameterError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if timeout_s <= 0 or max_bytes <= 44:
        raise ParameterError("timeout_s must be positive and max_bytes larger than a WAV header")
    row = _typed_row(row)
    sf2 = Path(sf2_path) if sf2_path is not None else find_soundfont()
    if not sf2.is_file():
        raise DataError(f"soundfont not found: {sf2} (Debian package fluid-soundfont-gm)")
    _check_synth_available()
    expected_bytes = 44 + 2 * int(round(row["duration_s"] * SAMPLE_RATE))
    if expected_bytes > max_bytes:
        raise AudioError(f"{row['id']}: a {row['duration_s']:g} s clip needs {expected_bytes} bytes, over the {max_bytes}-byte cap")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}.wav")
    started = time.perf_counter()
    synth = _worker_synth(sf2) if share_synth else None
    job = _ClipJob(row, variant, sf2, tmp_path, max_bytes, Path(cache_dir) if cache_dir is not None else None, synth)
    try:
        _run_isolated(job, timeout_s)
        problem = _clip_problem(tmp_path, row["duration_s"], max_bytes)
        if problem:
            raise AudioError(f"{row['id']}: rendered file is invalid: {problem}")
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return ClipOutcome(row["id"], round(time.perf_counter() - started, 3))


def _clip_problem(path: Path, duration_s: float, max_bytes: int) -> str:
    """Why a rendered file is not a valid clip, or ``""`` when it is."""
    import soundfile

    try:
        size = path.stat().st_size
        info = soundfile.info(str(path))
    except (OSError, RuntimeError) as exc:
        return f"unreadable ({exc})"
    if size > max_bytes:
        return f"{size} bytes, over the {max_bytes}-byte cap"
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        return f"{info.samplerate} Hz, {info.channels} channels"
    if info.frames != int(round(duration_s * SAMPLE_RATE)):
        return f"{info.frames} samples, expected {int(round(duration_s * SAMPLE_RATE))}"
    return ""


# --------------------------------------------------------------------------------------------------
# Rendering the whole set
# --------------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What :func:`build_default_set` did, clip by clip, with timings in seconds."""

    variant: str
    root: Path
    built: list[ClipOutcome] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    failed: list[ClipOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (
            f"{self.variant}: {len(self.built)} built, {len(self.skipped_existing)} already there, "
            f"{len(self.failed)} failed in {self.elapsed_s:.1f} s -> {self.root / self.variant}"
        )
        for outcome in self.failed[:10]:
            text += f"\n  failed {outcome.id}: {outcome.reason}"
        return text


@dataclass(frozen=True)
class _BuildSettings:
    variant: str
    sf2_path: Path
    timeout_s: float
    max_bytes: int
    cache_dir: Optional[Path]


def _render_piece_task(clips: list[tuple[dict, Path]], settings: _BuildSettings) -> list[ClipOutcome]:
    """Pool task: the clips of one piece, one after the other, so the piece is parsed only once.

    Each clip still runs in its own killable process; an expected failure becomes an outcome with
    its reason.
    """
    outcomes = []
    for row, out_path in clips:
        started = time.perf_counter()
        try:
            outcomes.append(
                render_clip(
                    row, settings.variant, settings.sf2_path, out_path, settings.timeout_s, settings.max_bytes,
                    cache_dir=settings.cache_dir, share_synth=True,
                )
            )
        except MusiclustError as exc:
            outcomes.append(ClipOutcome(str(row.get("id")), round(time.perf_counter() - started, 3), str(exc) or type(exc).__name__))
    return outcomes


def _piece_tasks(todo: list[tuple[dict, Path]]) -> list[list[tuple[dict, Path]]]:
    """Clips grouped by source piece, largest source file first (parse cost grows with it, and
    starting the slowest pieces first keeps both workers busy to the end)."""
    pieces: dict[tuple[str, Optional[int]], list[tuple[dict, Path]]] = {}
    for row, out_path in todo:
        pieces.setdefault((row["corpus_path"], row["number"]), []).append((row, out_path))
    root = corpus_root()

    def source_size(key: tuple[str, Optional[int]]) -> int:
        try:
            size = (root / key[0]).stat().st_size
        except OSError:
            return 0
        return size if key[1] is None else 0  # a tune inside an ABC collection is small

    return [pieces[key] for key in sorted(pieces, key=lambda k: (-source_size(k), k[0], k[1] or 0))]


def _remove_stale_temporaries(folder: Path) -> None:
    for stale in folder.glob(".*.tmp-*.wav"):
        stale.unlink(missing_ok=True)


def _progress_bar(total: int, show_bar: Optional[bool], variant: str):
    if show_bar is None:
        show_bar = sys.stderr.isatty()
    if not show_bar or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"rendering {variant}", unit="clip")


def build_default_set(
    root: Path = DEFAULT_ROOT,
    variant: str = "natural",
    jobs: int = 2,
    progress: Optional[Callable[[int, int, str], None]] = None,
    *,
    manifest: Path = DEFAULT_MANIFEST,
    sf2_path: Optional[Path] = None,
    timeout_s: float = 60.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cache_dir: Optional[Path] = DEFAULT_EVENT_CACHE,
    show_bar: Optional[bool] = None,
) -> BuildReport:
    """Render every manifest row into ``root/<variant>/<id>.wav`` in ``jobs`` worker processes.

    Clips that already exist and are valid are skipped; failures are recorded with their reason and
    never stop the rest. A worker takes all clips of one piece in turn (the piece is parsed once,
    its notes cached under ``cache_dir``), largest source files first. ``progress(done, total, clip_id)`` is called in this process after every
    clip (skipped ones included); a tqdm bar is shown when stderr is a terminal (``show_bar``
    overrides). Workers are spawned (not forked) so that calling this from a threaded program such
    as a web app is safe; each clip then runs in its own killable process.
    """
    if variant not in VARIANTS:
        raise ParameterError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ParameterError("jobs must be a positive integer")
    started = time.perf_counter()
    rows = read_manifest(manifest)
    sf2 = Path(sf2_path) if sf2_path is not None else find_soundfont()
    _check_synth_available()
    folder = Path(root) / variant
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    report = BuildReport(variant, Path(root))
    todo = []
    for row in rows:
        out_path = folder / f"{row['id']}.wav"
        if out_path.is_file() and not _clip_problem(out_path, row["duration_s"], max_bytes):
            report.skipped_existing.append(row["id"])
        else:
            todo.append((row, out_path))
    bar = _progress_bar(len(rows), show_bar, variant)
    done = 0

    def tick(clip_id: str) -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.update(1)
        if progress is not None:
            progress(done, len(rows), clip_id)

    try:
        for clip_id in report.skipped_existing:
            tick(clip_id)
        settings = _BuildSettings(variant, sf2, timeout_s, max_bytes, Path(cache_dir) if cache_dir is not None else None)
        for outcome in _render_all(_piece_tasks(todo), settings, jobs):
            (report.failed if outcome.reason else report.built).append(outcome)
            tick(outcome.id)
    finally:
        if bar is not None:
            bar.close()
    report.elapsed_s = round(time.perf_counter() - started, 2)
    return report


def _render_all(tasks: list[list[tuple[dict, Path]]], settings: _BuildSettings, jobs: int) -> Iterable[ClipOutcome]:
    """Outcomes as pieces finish; a broken pool fails the clips it still held, with the reason."""
    if not tasks:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        pending = {pool.submit(_render_piece_task, clips, settings): clips for clips in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                clips = pending.pop(future)
                try:
                    yield from future.result()
                except BrokenProcessPool as exc:
                    for row, _ in clips:
                        yield ClipOutcome(str(row["id"]), 0.0, f"worker pool broke: {exc}")


def _main(argv: Optional[list[str]] = None) -> int:
    """``python -m musiclust.data.corpus manifest|render [--variant V] [--jobs N]`` (maintenance)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m musiclust.data.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("manifest", "render"))
    parser.add_argument("--variant", choices=VARIANTS, default="natural")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_EVENT_CACHE)
    args = parser.parse_args(argv)
    try:
        if args.command == "manifest":
            skipped: dict[str, str] = {}
            started = time.perf_counter()
            rows = write_manifest(args.manifest, build_manifest(skipped=skipped, log=print))
            print(f"{len(rows)} rows -> {args.manifest} in {time.perf_counter() - started:.0f} s; {len(skipped)} candidates skipped")
            for piece, reason in sorted(skipped.items()):
                print(f"  skipped {piece}: {reason}")
        else:
            report = build_default_set(args.root, args.variant, args.jobs, manifest=args.manifest, cache_dir=args.cache_dir)
            print(report.summary())
            return 0 if report.ok else 1
    except MusiclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
