"""What a music file says about itself: title, artist, album, genre and lyrics from its tags
(``mutagen``), and lyrics from ``.lrc`` / ``.txt`` files beside it.

Tags are read, never trusted to be there: a file without tags, or with tags mutagen cannot parse,
gives empty fields (its audio is judged later, by decoding). Lyrics are looked for in this order,
the first non-empty one winning: embedded (ID3 ``USLT``; Vorbis/FLAC/Opus ``LYRICS`` or
``UNSYNCEDLYRICS``), then a same-named ``.lrc``, then a same-named ``.txt``. Every source goes
through :func:`lyrics_text`: LRC time stamps, LRC metadata lines (``[ar:…]``) and section headers
(``[Chorus]``) are removed, then :func:`musiclust.data.lyrics.clean_lyrics` joins split syllables
and drops what is not text, so TF-IDF sees words, not markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import mutagen
from mutagen.id3 import ID3

from musiclust.data.lyrics import clean_lyrics

MAX_LYRICS_CHARS = 20_000  # longer lyrics are cut: enough for any song, bounded for TF-IDF
SIDECAR_SUFFIXES = (".lrc", ".txt")  # in order of preference
VORBIS_LYRICS_KEYS = ("lyrics", "unsyncedlyrics")

_LRC_TIME = re.compile(r"\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]")  # [mm:ss.xx] line stamps
_LRC_WORD_TIME = re.compile(r"<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>")  # <mm:ss.xx> enhanced-LRC word stamps
_BRACKETED_LINE = re.compile(r"^\s*\[[^\]]*\]\s*$")  # [ar:Someone], [offset:+200], [Chorus], [Verse 2]


@dataclass(frozen=True)
class FileTags:
    """Tag fields of one file; empty strings (``None`` for lyrics) when the file does not say."""

    title: str = ""
    artist: str = ""
    album: str = ""
    genre: str = ""
    lyrics: Optional[str] = None


def strip_lrc(text: str) -> str:
    """Lyrics text without LRC markup: line and word time stamps removed, metadata lines
    (``[ar:…]``, ``[ti:…]``, ``[offset:…]``) and bracketed section headers (``[Chorus]``) dropped."""
    lines = []
    for line in text.splitlines():
        if _BRACKETED_LINE.match(line) and not _LRC_TIME.fullmatch(line.strip()):
            continue
        line = _LRC_WORD_TIME.sub("", _LRC_TIME.sub("", line)).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def lyrics_text(raw: Optional[str]) -> Optional[str]:
    """Usable lyrics from any source's raw text, or ``None`` when nothing meaningful is left."""
    if not raw:
        return None
    cleaned = clean_lyrics(strip_lrc(str(raw)[: MAX_LYRICS_CHARS * 2]))[:MAX_LYRICS_CHARS]
    return cleaned or None


def _first(values) -> str:
    for value in values or ():
        text = str(value).strip()
        if text:
            return text
    return ""


def _id3_tags(tags: ID3) -> FileTags:
    def text(frame_id: str) -> str:
        frame = tags.get(frame_id)
        return _first(frame.text) if frame is not None else ""

    genre_frame = tags.get("TCON")
    genre = _first(genre_frame.genres) if genre_frame is not None else ""  # resolves ID3v1 numbers: "(17)" -> Rock
    lyrics = next(filter(None, (lyrics_text(frame.text) for frame in tags.getall("USLT"))), None)
    return FileTags(text("TIT2"), text("TPE1"), text("TALB"), genre, lyrics)


def _vorbis_tags(tags) -> FileTags:
    def text(key: str) -> str:
        return _first(tags.get(key)) if key in tags else ""

    lyrics = next(filter(None, (lyrics_text(v) for k in VORBIS_LYRICS_KEYS if k in tags for v in tags[k])), None)
    return FileTags(text("title"), text("artist"), text("album"), text("genre"), lyrics)


def read_tags(path: Path) -> FileTags:
    """Title, artist, album, genre and embedded lyrics of an audio file; empty fields when it has none.

    Handles ID3 (MP3, and WAV's ``id3`` chunk) and Vorbis comments (FLAC, Ogg Vorbis, Ogg Opus). A file
    mutagen cannot parse gives empty tags: whether it is usable audio is the decoder's call, not the tagger's.
    """
    try:
        audio = mutagen.File(path)
    except (mutagen.MutagenError, OSError, ValueError, EOFError):
        return FileTags()
    tags = getattr(audio, "tags", None)
    if tags is None:
        return FileTags()
    if isinstance(tags, ID3):
        return _id3_tags(tags)
    if hasattr(tags, "keys") and hasattr(tags, "get"):
        return _vorbis_tags(tags)
    return FileTags()


def _decode_text(raw: bytes) -> str:
    """Sidecar bytes as text: UTF-8 or UTF-16 by their BOM, else UTF-8, else Windows-1252 (old LRC editors)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def sidecar_lyrics(audio: Path, allowed: Callable[[Path], bool] = lambda p: True) -> tuple[Optional[str], dict[str, str]]:
    """(lyrics, problems) from a ``.lrc`` or ``.txt`` with the audio file's stem, in that order.

    ``allowed`` vets each sidecar before it is read (the library-root check: a ``song.lrc`` linking to
    ``/etc/passwd`` must not become lyrics on screen). ``problems`` maps a sidecar that exists but cannot
    be used to the reason, to be listed beside the skipped files.
    """
    problems: dict[str, str] = {}
    for suffix in SIDECAR_SUFFIXES:
        for candidate in dict.fromkeys((audio.with_suffix(suffix), audio.with_suffix(suffix.upper()))):
            if not candidate.is_file():
                continue
            if not allowed(candidate):
                problems[str(candidate)] = "lyrics file links outside the library roots: not read"
                continue
            try:
                with open(candidate, "rb") as handle:
                    raw = handle.read(MAX_LYRICS_CHARS * 4)
            except OSError as exc:
                problems[str(candidate)] = f"lyrics file unreadable: {exc.strerror or exc}"
                continue
            text = lyrics_text(_decode_text(raw))
            if text:
                return text, problems
    return None, problems
