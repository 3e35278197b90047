"""A collection of tracks, from the default set, a folder of the user's music, or a CSV manifest.

Loading never decodes audio (that is :mod:`musiclust.features.mel`' job); it finds the files, their
tags and lyrics (:mod:`musiclust.data.tags`), decides where groups come from, and reports files it had
to skip with the reason. :func:`load_collection` is the one entry point; given ``roots`` it reads only
under the library roots (:mod:`musiclust.data.roots`), as the app always does.

Where groups come from is the caller's choice (``groups=``):

- ``folder``: the immediate sub-folder under the library folder (``genre/track.wav``);
- ``tag``: the files' genre tag (case variants merged: "rock" and "Rock" are one group);
- ``column``: a CSV manifest's column (``column=``, default ``genre``);
- ``none``: no groups, an unlabelled library;
- ``auto`` (default): for a folder, ``folder`` when at least two immediate sub-folders hold audio
  directly, else ``none`` (a nested ``Artist/Album`` library is unlabelled, not grouped by artist); for a
  CSV, its ``genre`` column when it has one, else ``none``; for the default set, its manifest's groups.

Track ids come from the path relative to the library folder (or the CSV's folder), so they stay the
same across rescans; every file is its own piece (``piece_id``).
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

from musiclust.data.library import folder_group, folder_group_source, refusal_reason, scan_folder, OUTSIDE_ROOTS
from musiclust.data.roots import check_path, is_default_spec, is_within_roots
from musiclust.data.tags import MAX_LYRICS_CHARS, FileTags, lyrics_text, read_tags, sidecar_lyrics
from musiclust.errors import DataError, ParameterError
from musiclust.features.audio import AUDIO_EXTENSIONS
from musiclust import paths

DEFAULT_VARIANTS = ("natural", "piano")
GROUP_SOURCES = ("auto", "folder", "tag", "column", "none")
DEFAULT_GROUP_COLUMN = "genre"
MAX_ID_CHARS = 80


@dataclass(frozen=True)
class Track:
    """One piece of music; ``group`` and ``lyrics`` are ``None`` when unknown (never a placeholder)."""

    id: str
    path: Path
    title: str
    artist: str = ""
    group: Optional[str] = None
    lyrics: Optional[str] = None
    piece_id: Optional[str] = None  # clips of one piece share it: validation splits never cut a piece
    album: str = ""
    genre: Optional[str] = None  # the genre tag, whatever the group source

    @property
    def piece(self) -> str:
        return self.piece_id or self.id


@dataclass
class Collection:
    """Tracks plus what was skipped while loading them (path -> reason), and where the groups came from."""

    name: str
    tracks: list[Track]
    skipped: dict[str, str] = field(default_factory=dict)
    group_source: str = "none"  # folder | tag | column:<name> | manifest | none
    group_reason: str = ""  # why, when "auto" chose it

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def groups(self) -> list[str]:
        """Known group names, sorted; empty when no track has a group."""
        return sorted({t.group for t in self.tracks if t.group})

    def by_id(self) -> dict[str, Track]:
        return {t.id: t for t in self.tracks}

    def fingerprint(self) -> str:
        """Identifies the collection's membership (ids, paths, groups, lyrics) for checkpoint metadata."""
        digest = hashlib.sha256()
        for t in self.tracks:
            digest.update(f"{t.id}\0{t.path.name}\0{t.group}\0{t.lyrics}\n".encode())
        return digest.hexdigest()[:16]


def _clean_optional(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    text = text.strip()[:MAX_LYRICS_CHARS]
    return text or None


def track_id(relative: Path, taken: set[str]) -> str:
    """A readable id from a relative path (``Artist-Album-01_Title``), unique within ``taken``.

    Files are taken in sorted path order, so a rescan gives every track the id it had; an id changes
    only when a new file comes to claim the same readable form first. Then (``song.flac`` sorting before
    ``song.mp3``), or when the readable form is too long, the later file gets a hash of its full
    relative path appended, which keeps ids unique without numbering files by the order they were found.
    """
    text = relative.with_suffix("").as_posix().replace("/", "-")
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "track"
    if len(base) > MAX_ID_CHARS or base in taken:
        base = f"{base[: MAX_ID_CHARS - 9]}-{hashlib.sha256(relative.as_posix().encode()).hexdigest()[:8]}"
    candidate, n = base, 1
    while candidate in taken:  # only for a hash collision, or a path that looks like another's hashed id
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def _check_groups(groups: str) -> str:
    if groups not in GROUP_SOURCES:
        raise ParameterError(f"unknown group source {groups!r}; choose one of {', '.join(GROUP_SOURCES)}")
    return groups


def _merge_case_variants(tracks: list[Track]) -> list[Track]:
    """Genre groups that differ only in case or spacing become one, spelled as most files spell it."""
    spellings: dict[str, Counter] = {}
    for t in tracks:
        if t.group:
            spellings.setdefault(" ".join(t.group.split()).casefold(), Counter())[t.group] += 1
    chosen = {key: min(counts, key=lambda g: (-counts[g], g)) for key, counts in spellings.items()}
    return [t if not t.group else replace(t, group=chosen[" ".join(t.group.split()).casefold()]) for t in tracks]


def load_default(
    variant: str = "natural", manifest: Optional[Path] = None, audio_root: Optional[Path] = None, groups: str = "auto"
) -> Collection:
    """The embedded default set: manifest rows whose rendered clip exists under ``audio_root/variant``
    (by default the locations in force: :func:`musiclust.paths.default_manifest`, ``default_audio_root``).

    Its groups are the manifest's (``auto`` or ``column``), or none (``none``: the set as an unlabelled
    library, to test what finds k without labels).
    """
    manifest = Path(manifest or paths.default_manifest())
    audio_root = Path(audio_root or paths.default_audio_root())
    if variant not in DEFAULT_VARIANTS:
        raise DataError(f"unknown default-set variant {variant!r}; choose one of {', '.join(DEFAULT_VARIANTS)}")
    if _check_groups(groups) in ("folder", "tag"):
        raise ParameterError(f"the default set's groups come from its manifest: use auto or none, not {groups!r}")
    if not manifest.is_file():
        raise DataError(f"default-set manifest not found at {manifest}")
    folder = audio_root / variant
    tracks, skipped = [], {}
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = folder / f"{row['id']}.wav"
            if not path.is_file():
                skipped[str(path)] = "not rendered yet (run: python -m musiclust data)"
                continue
            tracks.append(
                Track(
                    id=row["id"],
                    path=path,
                    title=row.get("title") or row["id"],
                    artist=row.get("composer", ""),
                    group=(row.get("group") or None) if groups != "none" else None,
                    lyrics=_clean_optional(row.get("lyrics")),
                    piece_id=row.get("piece_id") or None,
                    genre=row.get("group") or None,
                )
            )
    if not tracks:
        raise DataError(
            f"the default set ({variant}) has not been rendered under {folder}; run: python -m musiclust data --variant {variant}"
        )
    return Collection(f"default-{variant}", tracks, skipped, group_source="none" if groups == "none" else "manifest")


def _lyrics(path: Path, tags: FileTags, roots: Optional[Sequence[Path]], skipped: dict[str, str]) -> Optional[str]:
    """Embedded lyrics, else a ``.lrc`` / ``.txt`` sidecar's (vetted against ``roots``); a sidecar problem is noted."""
    if tags.lyrics:
        return tags.lyrics
    lyrics, problems = sidecar_lyrics(path, (lambda p: is_within_roots(p, roots)) if roots is not None else (lambda p: True))
    skipped.update(problems)
    return lyrics


def load_folder(folder: Path, groups: str = "auto", roots: Optional[Sequence[Path]] = None) -> Collection:
    """A folder of audio files, searched recursively (see :mod:`musiclust.data.library`).

    Titles, artists, albums, genres and lyrics come from tags and sidecars (:mod:`musiclust.data.tags`);
    groups from ``groups`` (module docstring). With ``roots``, the folder and every file read must lie
    under a library root. Refused files (M4A, links out of the roots) are in ``skipped`` with the reason.
    """
    if _check_groups(groups) == "column":
        raise ParameterError("groups='column' reads a CSV manifest's column; for a folder choose folder, tag or none")
    folder = Path(folder).expanduser()
    if roots is not None:
        check_path(folder, roots)
    if not folder.is_dir():
        raise DataError(f"music folder not found: {folder}")
    scan = scan_folder(folder, roots)
    if not scan.files:
        refused = f"; {len(scan.refused)} refused, e.g. {next(iter(scan.refused.values()))}" if scan.refused else ""
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {folder}{refused}")
    source, reason = folder_group_source(scan) if groups == "auto" else (groups, "")
    tracks, skipped, taken = [], dict(scan.refused), set()
    for path in scan.files:
        relative = scan.relative(path)
        tags = read_tags(path)
        group = folder_group(relative) if source == "folder" else (tags.genre or None) if source == "tag" else None
        tid = track_id(relative, taken)
        tracks.append(
            Track(
                id=tid,
                path=path,
                title=tags.title or path.stem,
                artist=tags.artist,
                group=group,
                lyrics=_lyrics(path, tags, roots, skipped),
                piece_id=tid,
                album=tags.album,
                genre=tags.genre or None,
            )
        )
    if source == "tag":
        tracks = _merge_case_variants(tracks)
    return Collection(f"folder:{folder.name}", tracks, skipped, group_source=source, group_reason=reason)


def _csv_group_column(header: list[str], groups: str, column: Optional[str], name: str) -> tuple[str, Optional[str], str]:
    """(source, column, why) for a CSV: which column gives groups, if any."""
    if groups == "auto":
        if DEFAULT_GROUP_COLUMN in header:
            return "column", DEFAULT_GROUP_COLUMN, f"auto: the CSV has a '{DEFAULT_GROUP_COLUMN}' column"
        return "none", None, f"auto: the CSV has no '{DEFAULT_GROUP_COLUMN}' column"
    if groups == "column":
        column = column or DEFAULT_GROUP_COLUMN
        if column not in header:
            raise DataError(f"{name} has no column {column!r} to take groups from (its columns: {', '.join(header)})")
        return "column", column, ""
    return groups, None, ""


def _csv_path(raw: str, manifest: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else manifest.parent / path


def _csv_relative(path: Path, manifest: Path) -> Path:
    """The path the id and a ``folder`` group come from: relative to the CSV's folder when under it."""
    try:
        return path.relative_to(manifest.parent)
    except ValueError:
        return Path(path.name)


class _Cells:
    """A CSV row's cells, stripped; ``""`` for a column the row or the header lacks."""

    def __init__(self, row: dict):
        self.row = row

    def __call__(self, key: Optional[str]) -> str:
        return (self.row.get(key) or "").strip() if key else ""


def load_csv(manifest: Path, groups: str = "auto", column: Optional[str] = None, roots: Optional[Sequence[Path]] = None) -> Collection:
    """A CSV with a ``path`` column (absolute, or relative to the CSV) and optional ``title``, ``artist``,
    ``album``, ``genre``, ``lyrics`` columns; a column left empty is filled from the file's tags and sidecars.

    With ``roots``, the CSV and every file it lists must lie under a library root (a listed path
    elsewhere is skipped, not read).
    """
    _check_groups(groups)
    manifest = Path(manifest).expanduser()
    if roots is not None:
        check_path(manifest, roots)
    if not manifest.is_file():
        raise DataError(f"CSV manifest not found: {manifest}")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest.name} is not a readable UTF-8 CSV: {exc}") from None
    if not rows or "path" not in header:
        raise DataError(f"{manifest.name} needs a header row with a 'path' column (optional: title, artist, album, genre, lyrics)")
    source, group_column, reason = _csv_group_column(header, groups, column, manifest.name)
    tracks, skipped, taken = [], {}, set()
    for number, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            skipped[f"{manifest.name}:{number}"] = "empty path"
            continue
        path = _csv_path(raw, manifest)
        if roots is not None and not is_within_roots(path, roots):
            skipped[str(path)] = OUTSIDE_ROOTS  # checked first: says nothing about whether it exists
            continue
        if not path.is_file():
            skipped[str(path)] = "file not found"
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped[str(path)] = refusal_reason(path) or f"not a supported audio type ({', '.join(AUDIO_EXTENSIONS)})"
            continue
        tags = read_tags(path)
        relative = _csv_relative(path, manifest)
        cell = _Cells(row)
        group = {"column": cell(group_column), "folder": folder_group(relative), "tag": tags.genre}.get(source)
        tid = track_id(relative, taken)
        tracks.append(
            Track(
                id=tid,
                path=path,
                title=cell("title") or tags.title or path.stem,
                artist=cell("artist") or tags.artist,
                group=group or None,
                lyrics=lyrics_text(row.get("lyrics")) or _lyrics(path, tags, roots, skipped),
                piece_id=tid,
                album=cell("album") or tags.album,
                genre=cell("genre") or tags.genre or None,
            )
        )
    if not tracks:
        raise DataError(f"{manifest.name} lists no usable audio files ({len(skipped)} skipped)")
    if source == "tag":
        tracks = _merge_case_variants(tracks)
    group_source = f"column:{group_column}" if source == "column" else source
    return Collection(f"csv:{manifest.stem}", tracks, skipped, group_source=group_source, group_reason=reason)


def load_collection(
    spec: str = "default", groups: str = "auto", column: Optional[str] = None, roots: Optional[Sequence[Path]] = None
) -> Collection:
    """``default`` / ``default:piano``, a folder path, or a ``.csv`` manifest path.

    ``groups`` says where groups come from (``auto``, ``folder``, ``tag``, ``column``, ``none``; see the
    module docstring) and ``column`` names a CSV's group column. ``roots``: the library roots to read
    under (``musiclust.data.roots.library_roots()``); the app passes them always, so a visitor can read
    nothing outside them. ``None`` reads any path, for a trusted caller (a person at the command line).
    """
    if is_default_spec(spec):
        variant = "natural" if spec == "default" else spec.split(":", 1)[1]
        return load_default(variant, groups=groups)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".csv":
        return load_csv(path, groups=groups, column=column, roots=roots)
    return load_folder(path, groups=groups, roots=roots)
