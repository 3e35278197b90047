"""Libraries the app has seen: every data set with trained models, and the one chosen last.

The sidebar offers the folders and CSVs that have models (so a library trained yesterday is one click
away) and starts on the last one chosen. Both are read from what is already on disk: each checkpoint's
``manifest.json`` records the ``data`` spec it was trained on, and the last choice is a small JSON file
(``last-library.json``) in the jobs/state folder, replaced atomically so a crash never leaves half of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from musiclust.data.collection import GROUP_SOURCES
from musiclust.paths import checkpoints_root, jobs_dir
from musiclust.serving.checkpoint import MANIFEST, available, load_report, save_report

LAST_LIBRARY = "last-library"  # <state dir>/last-library.json


@dataclass(frozen=True)
class KnownLibrary:
    """A data set with models: its spec (as ``--data`` takes it), checkpoint folder, models, newest save."""

    data: str
    folder: Path
    models: tuple[str, ...]
    saved_at: str


@dataclass(frozen=True)
class LibraryChoice:
    """What the sidebar remembers: the data set and where its groups come from."""

    data: str
    groups: str = "auto"
    column: Optional[str] = None


def _default_spec_of(folder_name: str) -> Optional[str]:
    """The default set's spec from its checkpoint folder name (``default``, ``default-piano``)."""
    if folder_name == "default":
        return "default"
    if folder_name.startswith("default-"):
        return "default:" + folder_name.split("-", 1)[1]
    return None


def _manifest(folder: Path, model: str) -> tuple[dict, int]:
    """A model's manifest and when it was written (ns; ``saved_at`` has only whole seconds)."""
    path = folder / model / MANIFEST
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        written = path.stat().st_mtime_ns
    except (OSError, ValueError):
        return {}, 0
    return (meta, written) if isinstance(meta, dict) else ({}, 0)


def known_libraries(root: Optional[Path] = None) -> list[KnownLibrary]:
    """Every data set with at least one model under the checkpoints ``root`` (default: the one in force),
    most recently trained first.

    Only the small ``manifest.json`` of each model is read, never weights. A folder whose manifests do
    not record the data they were trained on (made by hand or by an old version) is left out unless it
    is the default set's, whose spec its name gives.
    """
    root = Path(root) if root is not None else checkpoints_root()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        models = available(folder)
        read = [(meta, written) for meta, written in (_manifest(folder, name) for name in models) if meta]
        specs = [meta["data"] for meta, _ in read if isinstance(meta.get("data"), str) and meta["data"]]
        spec = specs[0] if specs else _default_spec_of(folder.name)
        if not models or spec is None:
            continue
        newest = max(read, key=lambda pair: pair[1], default=({}, 0))
        found.append((newest[1], KnownLibrary(spec, folder, tuple(models), str(newest[0].get("saved_at", "")))))
    return [library for _, library in sorted(found, key=lambda pair: pair[0], reverse=True)]


def remember_library(choice: LibraryChoice, state_dir: Optional[Path] = None) -> Path:
    """Record ``choice`` as the last library chosen, atomically (the checkpoints' JSON report writer:
    temp file, fsync, rename), in ``state_dir`` (default: the jobs folder in force)."""
    return save_report(Path(state_dir) if state_dir is not None else jobs_dir(), LAST_LIBRARY, asdict(choice))


def last_library(state_dir: Optional[Path] = None) -> Optional[LibraryChoice]:
    """The last library chosen, or ``None`` when none was recorded or the record is unreadable.

    The caller still checks the spec against the library roots: they may have changed since.
    """
    raw = load_report(Path(state_dir) if state_dir is not None else jobs_dir(), LAST_LIBRARY)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), str) or not raw["data"]:
        return None
    groups = raw.get("groups", "auto")
    column = raw.get("column")
    if groups not in GROUP_SOURCES or not (column is None or isinstance(column, str)):
        return None
    return LibraryChoice(raw["data"], groups, column)
