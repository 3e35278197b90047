"""A collection of tracks, from the default set, a folder of the user's music, or a CSV manifest.

Loading never decodes audio (that is :mod:`musiclust.features.mel`' job); it finds the files, their
metadata and lyrics, and reports files it had to skip with the reason.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from musiclust.features.audio import AUDIO_EXTENSIONS
from musiclust.errors import DataError
from musiclust import paths

DEFAULT_VARIANTS = ("natural", "piano")
MAX_LYRICS_CHARS = 20_000  # longer lyrics files are cut: enough for any song, bounded for TF-IDF


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

    @property
    def piece(self) -> str:
        return self.piece_id or self.id


@dataclass
class Collection:
    """Tracks plus what was skipped while loading them (path -> reason)."""

    name: str
    tracks: list[Track]
    skipped: dict[str, str] = field(default_factory=dict)

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


def _safe_id(text: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80] or "track"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def load_default(variant: str = "natural", manifest: Optional[Path] = None, audio_root: Optional[Path] = None) -> Collection:
    """The embedded default set: manifest rows whose rendered clip exists under ``audio_root/variant``
    (by default the locations in force, :func:`musiclust.paths.default_manifest` and ``default_audio_root``)."""
    manifest = Path(manifest or paths.default_manifest())
    audio_root = Path(audio_root or paths.default_audio_root())
    if variant not in DEFAULT_VARIANTS:
        raise DataError(f"unknown default-set variant {variant!r}; choose one of {', '.join(DEFAULT_VARIANTS)}")
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
                    group=row.get("group") or None,
                    lyrics=_clean_optional(row.get("lyrics")),
                    piece_id=row.get("piece_id") or None,
                )
            )
    if not tracks:
        raise DataError(
            f"the default set ({variant}) has not been rendered under {folder}; run: python -m musiclust data --variant {variant}"
        )
    return Collection(f"default-{variant}", tracks, skipped)


def _read_lyrics_file(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(lyrics, problem): a same-named .txt beside the audio, decoded as UTF-8 with replacement."""
    if not path.is_file():
        return None, None
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_LYRICS_CHARS * 4)
    except OSError as exc:
        return None, f"lyrics file unreadable: {exc.strerror or exc}"
    return _clean_optional(raw.decode("utf-8", errors="replace")), None


def load_folder(folder: Path) -> Collection:
    """A folder of audio files (wav, flac, ogg, mp3), searched recursively.

    The group is the immediate sub-folder's name (the GTZAN layout ``genre/track.wav``); files
    directly in ``folder`` have no group. Lyrics come from a same-named ``.txt`` beside the audio.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"music folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {folder}")
    tracks, skipped, taken = [], {}, set()
    for path in files:
        lyrics, problem = _read_lyrics_file(path.with_suffix(".txt"))
        if problem:
            skipped[str(path.with_suffix(".txt"))] = problem
        relative = path.relative_to(folder)
        group = relative.parts[0] if len(relative.parts) > 1 else None
        tracks.append(
            Track(
                id=_safe_id(str(relative.with_suffix("")).replace("/", "-"), taken),
                path=path,
                title=path.stem,
                group=group,
                lyrics=lyrics,
            )
        )
    return Collection(f"folder:{folder.name}", tracks, skipped)


def load_csv(manifest: Path) -> Collection:
    """A CSV with a ``path`` column (absolute, or relative to the CSV) and optional
    ``title``, ``artist``, ``genre``, ``lyrics`` columns."""
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise DataError(f"CSV manifest not found: {manifest}")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest.name} is not a readable UTF-8 CSV: {exc}") from None
    if not rows or "path" not in rows[0]:
        raise DataError(f"{manifest.name} needs a header row with a 'path' column (optional: title, artist, genre, lyrics)")
    tracks, skipped, taken = [], {}, set()
    for number, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            skipped[f"{manifest.name}:{number}"] = "empty path"
            continue
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            skipped[str(path)] = "file not found"
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped[str(path)] = f"not a supported audio type ({', '.join(AUDIO_EXTENSIONS)})"
            continue
        tracks.append(
            Track(
                id=_safe_id(path.stem, taken),
                path=path,
                title=(row.get("title") or "").strip() or path.stem,
                artist=(row.get("artist") or "").strip(),
                group=(row.get("genre") or "").strip() or None,
                lyrics=_clean_optional(row.get("lyrics")),
            )
        )
    if not tracks:
        raise DataError(f"{manifest.name} lists no usable audio files ({len(skipped)} skipped)")
    return Collection(f"csv:{manifest.stem}", tracks, skipped)


def load_collection(spec: str = "default") -> Collection:
    """``default`` / ``default:piano``, a folder path, or a ``.csv`` manifest path."""
    if spec in ("default", "default:natural"):
        return load_default("natural")
    if spec.startswith("default:"):
        return load_default(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    return load_folder(path)
