"""Scanning a music folder: every audio file under it, at any depth, and what was refused and why.

A real library is ``Artist/Album/NN Title.mp3``, mixed formats, with cover art, playlists, ``.lrc``
files and macOS ``._`` shadow files beside the music. The scan keeps the files libsndfile decodes
(:data:`musiclust.features.audio.AUDIO_EXTENSIONS`), lists formats it cannot decode (M4A/AAC, WMA, …)
with the reason, ignores everything else (images, text, hidden files and folders), and never follows
a link to a folder (no cycles, no wandering off the library). With ``roots`` given, a file whose link
leads outside every library root is listed as refused and never opened.

Groups: :func:`folder_group_source` decides whether the immediate sub-folders are groups. They are when
at least two of them hold audio *directly* (``genre/track.wav``, the GTZAN layout); in a nested library
(``Artist/Album/track.mp3``) the immediate sub-folders hold only folders, so the artists do not become
groups: the library is treated as unlabelled unless the caller asks for ``folder`` or ``tag`` groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from musiclust.data.roots import is_within_roots
from musiclust.features.audio import AUDIO_EXTENSIONS, MPEG4_REFUSAL, SUPPORTED_FORMATS

MIN_FOLDER_GROUPS = 2  # sub-folders holding audio directly, for "auto" to take folders as groups

_OTHER_CODECS = f"cannot be decoded here (supported: {SUPPORTED_FORMATS}); convert it to FLAC, OGG or MP3 first"
REFUSED_EXTENSIONS = {
    ".m4a": MPEG4_REFUSAL,
    ".m4b": MPEG4_REFUSAL,
    ".mp4": MPEG4_REFUSAL,
    ".aac": MPEG4_REFUSAL,
    ".alac": MPEG4_REFUSAL,
    ".wma": f"Windows Media Audio {_OTHER_CODECS}",
    ".ape": f"Monkey's Audio {_OTHER_CODECS}",
    ".wv": f"WavPack {_OTHER_CODECS}",
    ".mpc": f"Musepack {_OTHER_CODECS}",
    ".mka": f"Matroska audio {_OTHER_CODECS}",
    ".dsf": f"DSD audio {_OTHER_CODECS}",
    ".dff": f"DSD audio {_OTHER_CODECS}",
}
OUTSIDE_ROOTS = "links outside the library roots: not read"


@dataclass
class FolderScan:
    """Audio files under ``root`` (sorted by relative path) and the paths refused, with the reason."""

    root: Path
    files: list[Path] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.root)


def refusal_reason(path: Path) -> Optional[str]:
    """Why a file of a known but undecodable audio format is refused; ``None`` for any other file."""
    reason = REFUSED_EXTENSIONS.get(path.suffix.lower())
    return f"{path.name}: {reason}" if reason else None


def scan_folder(folder: Path, roots: Optional[Sequence[Path]] = None) -> FolderScan:
    """Every decodable audio file under ``folder``, recursively; see the module docstring for the rules.

    ``roots`` (resolved library roots, or ``None`` for no check) vets each file: one that resolves
    outside every root (a symbolic link out of the library) is refused, not read.
    """
    folder = Path(folder)
    scan = FolderScan(folder)

    def unreadable(error: OSError) -> None:
        scan.refused[str(error.filename or folder)] = f"folder unreadable: {error.strerror or error}"

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        for name in list(dirnames):
            if name.startswith("."):
                dirnames.remove(name)
            elif (here / name).is_symlink():
                scan.refused[str(here / name)] = "a link to a folder: not followed (add its target as a library of its own)"
        for name in filenames:
            path = here / name
            if name.startswith("."):
                continue  # hidden files, including macOS "._" shadows of real tracks
            suffix = path.suffix.lower()
            if suffix in REFUSED_EXTENSIONS:
                scan.refused[str(path)] = refusal_reason(path)
            elif suffix not in AUDIO_EXTENSIONS:
                continue
            elif roots is not None and not is_within_roots(path, roots):
                scan.refused[str(path)] = OUTSIDE_ROOTS
            elif not path.is_file():
                scan.refused[str(path)] = "a broken link (its target does not exist)"
            else:
                scan.files.append(path)
    scan.files.sort(key=lambda p: p.relative_to(folder).as_posix())
    return scan


def folder_group(relative: Path) -> Optional[str]:
    """The group a ``folder`` source gives a file: its immediate sub-folder, ``None`` at the top level."""
    return relative.parts[0] if len(relative.parts) > 1 else None


def folders_with_direct_audio(scan: FolderScan) -> list[str]:
    """Immediate sub-folders that hold at least one audio file directly (not only deeper down)."""
    return sorted({scan.relative(p).parts[0] for p in scan.files if len(scan.relative(p).parts) == 2})


def folder_group_source(scan: FolderScan) -> tuple[str, str]:
    """``("folder" | "none", why)`` for ``groups="auto"`` on a folder."""
    holders = folders_with_direct_audio(scan)
    if len(holders) >= MIN_FOLDER_GROUPS:
        return "folder", f"auto: {len(holders)} sub-folders hold audio directly"
    nested = any(len(scan.relative(p).parts) > 2 for p in scan.files)
    if nested:
        return "none", "auto: a nested library (audio deeper than the first sub-folder level), so no folder is a group"
    return "none", f"auto: fewer than {MIN_FOLDER_GROUPS} sub-folders hold audio directly"
