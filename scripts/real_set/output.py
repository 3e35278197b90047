"""The built folder: claiming it (never someone else's), writing files only when their bytes change, the
manifest, the decode cache, and pruning what a build no longer holds, so that the folder is the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from . import BuildError
from .catalog import CATALOG
from .sources import Candidate

COLUMNS = (
    "path", "soundtrack", "package", "licence", "duration_s", "sha256", "piece_id",
    "title", "genre", "offset_s", "sample_rate", "channels", "format", "source", "source_sha256", "copyright",
)  # fmt: skip
REQUIRED_COLUMNS = COLUMNS[:7]
MANIFEST = "MANIFEST.csv"
CACHE = ".analysis-cache.json"
GITIGNORE_TEXT = "# built by scripts/build_real_set.py from Debian packages: never committed\n*\n"


def made_here(out: Path) -> bool:
    """Whether ``out`` is a folder this builder wrote: its .gitignore or its manifest's header is ours."""
    try:
        if (out / ".gitignore").read_text() == GITIGNORE_TEXT:
            return True
    except (OSError, UnicodeDecodeError):
        pass
    try:
        with open(out / MANIFEST, encoding="utf-8") as handle:
            return handle.readline().rstrip("\n") == ",".join(COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False


def prepare_out(out: Path) -> None:
    """Creates ``out``; refuses a non-empty folder this builder did not make (it deletes what it manages)."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not made_here(out):
        raise BuildError(f"{out} is not empty and was not made by this builder: not a real-set folder; choose another")
    out.mkdir(parents=True, exist_ok=True)
    write_if_changed(out / ".gitignore", GITIGNORE_TEXT.encode())


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def prune(out: Path, wanted: set[str]) -> list[str]:
    """Removes files of catalog soundtrack folders that this build does not hold, so the folder is the manifest."""
    removed = []
    for soundtrack in CATALOG:
        folder = out / soundtrack.name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if (path.is_file() or path.is_symlink()) and path.relative_to(out).as_posix() not in wanted:
                path.unlink()
                removed.append(path.relative_to(out).as_posix())
        for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return removed


def write_manifest(out: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["path"]):
        writer.writerow(row)
    write_if_changed(out / MANIFEST, buffer.getvalue().encode("utf-8"))


def row_for(candidate: Candidate, path: str, sha: str, duration: float, offset: float, info: dict) -> dict:
    licence, holder = candidate.licence()
    return {
        "path": path, "soundtrack": candidate.soundtrack.name, "package": candidate.soundtrack.package,
        "licence": licence, "duration_s": f"{duration:.2f}", "sha256": sha, "piece_id": candidate.piece_id,
        "title": candidate.title[candidate.title.index(" ") + 1:], "genre": candidate.soundtrack.name,
        "offset_s": f"{offset:.2f}", "sample_rate": info["sample_rate"], "channels": info["channels"],
        "format": info["format"], "source": candidate.source, "source_sha256": candidate.sha256, "copyright": holder,
    }  # fmt: skip


def place_track(dest: Path, candidate: Candidate, symlink: bool) -> None:
    """The whole track at ``dest``: a link to the installed file (``symlink``, not for archive members) or a
    copy of its bytes; one already there and the same is left untouched."""
    in_archive = candidate.soundtrack.member_prefix is not None
    if symlink and not in_archive:
        target = str(Path(candidate.soundtrack.root, candidate.rel))
        if not (dest.is_symlink() and os.readlink(dest) == target):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, dest)
    elif not (dest.is_file() and not dest.is_symlink() and dest.stat().st_size == len(candidate.data())
              and sha256_file(dest) == candidate.sha256):
        write_if_changed(dest, candidate.data())


def load_cache(out: Path) -> dict:
    try:
        return json.loads((out / CACHE).read_text())
    except (OSError, ValueError):
        return {}


def save_cache(out: Path, cache: dict) -> None:
    write_if_changed(out / CACHE, json.dumps(cache, sort_keys=True, indent=0).encode())
