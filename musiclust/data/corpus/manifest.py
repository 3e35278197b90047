"""The manifest: the default set's selection rule, and writing / reading its output (``data/manifest.csv``).

**The rule** (:func:`build_manifest`) is deterministic: candidates come in :func:`selection_order`
(:mod:`.candidates`: sorted corpus paths and tune numbers, shuffled by a seeded ``random.Random``
per group) and are taken in that order; a candidate is skipped (deterministically, with its reason)
when it fails to parse, when its timing cannot be read, when it does not have the expected layout
(chorales: four SATB parts; quartets: four parts) or when it is shorter than ``MIN_PIECE_SECONDS``.
Only the first candidate of each dedupe key is used. Where a group has fewer usable pieces than
``PER_GROUP`` (quartets, madrigals), the longest pieces contribute a second clip from their middle;
both clips carry the same ``piece_id`` so a validation split can keep a piece on one side. Nothing
depends on the machine or the time; the rule does depend on the music21 version (10.5.1 made the
committed manifest).

**Clip duration is not a cue.** Every clip lasts exactly ``CLIP_SECONDS`` (30 s). A piece shorter
than that is played through twice (:func:`musiclust.data.corpus.scores._window`) and cut at 30 s;
pieces shorter than ``MIN_PIECE_SECONDS`` (15 s), which would need a third pass, are skipped.
Without this rule clip length alone identifies groups (Essen tunes average ~21 s, most chorales
< 30 s, quartets always 30 s).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from musiclust.data.corpus.candidates import GROUPS, PER_GROUP, Candidate, GroupSpec, PartInfo, _group, selection_order
from musiclust.data.corpus.scores import _limit_words, _load_score, _part_lyrics, _read_score, _score_composer, _score_error_types, _window
from musiclust.data.lyrics import guess_language
from musiclust.errors import DataError, ParameterError
from musiclust.paths import DEFAULT_MANIFEST

CLIP_SECONDS = 30.0
MIN_PIECE_SECONDS = 15.0
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


@dataclass(frozen=True)
class PieceInfo:
    """What parsing a candidate tells the rule."""

    length_s: float
    programs: tuple[int, ...]
    lyrics: str
    language: str
    composer: str


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
