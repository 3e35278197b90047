"""Self-describing checkpoints, written atomically and loaded without pickle.

A checkpoint is a folder: ``weights.safetensors`` (model tensors), ``arrays.safetensors`` (fitted
clustering / map / TF-IDF / normalisation state) and ``manifest.json`` (configs, labels, metrics,
data fingerprint, library versions). Nothing in it can run code on load.

``checkpoints/<name>`` is a symbolic link to a version folder under ``checkpoints/.versions/<name>/``.
A save writes and fsyncs a new version, then swaps the link with one atomic ``rename``: a crash at
any point leaves the previous checkpoint whole and in use, and readers never see half a checkpoint.
The previous version is kept, so a checkpoint that turns out unloadable can fall back to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy_bytes, save_file as save_numpy

from musiclust.store.durable import fsync_dir
from musiclust.features.hashes import content_hash
from musiclust.errors import CheckpointError, ParameterError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ARRAYS = "arrays.safetensors"
KEEP_VERSIONS = 2
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
LOAD_ATTEMPTS = 5  # a save that switches versions while a reader reads: the reader reads again
STALE_STAGING_SECONDS = 3600
T = TypeVar("T")


@dataclass
class Checkpoint:
    """What a checkpoint folder holds, in memory: JSON metadata and two dicts of arrays."""

    meta: dict
    weights: dict  # name -> np.ndarray (model state_dict, as numpy)
    arrays: dict  # name -> np.ndarray
    path: Optional[Path] = None


def check_name(name: str) -> str:
    if not name or not set(name) <= NAME_CHARS or len(name) > 64:
        raise ParameterError(f"checkpoint names use a-z, 0-9, '_' and '-' (at most 64), got {name!r}")
    return name


def library_versions() -> dict:
    """Versions recorded in each manifest, so a checkpoint says what made it."""
    import sklearn
    import torch

    from musiclust import __version__

    return {
        "musiclust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _write_file(path: Path, write) -> None:
    write(path)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def save(root: Path, name: str, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` as the new version of ``root/name`` and switch to it atomically."""
    root = Path(root)
    check_name(name)
    versions = root / ".versions" / name
    versions.mkdir(parents=True, exist_ok=True)
    version = versions / f"v{time.time_ns()}"  # sorts by creation time
    staging = versions / f".staging-{version.name}-{os.getpid()}"  # the pid lets a later save clear it if we die
    staging.mkdir()
    try:
        meta = dict(checkpoint.meta, format_version=FORMAT_VERSION, name=name, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if "versions" not in meta:  # (not setdefault: that imports torch and sklearn on every save)
            meta["versions"] = library_versions()
        _write_file(staging / WEIGHTS, lambda p: save_numpy(_contiguous(checkpoint.weights), str(p)))
        _write_file(staging / ARRAYS, lambda p: save_numpy(_contiguous(checkpoint.arrays), str(p)))
        meta["files"] = {part: content_hash(staging / part) for part in (WEIGHTS, ARRAYS)}  # checked on load
        _write_file(staging / MANIFEST, lambda p: p.write_text(json.dumps(meta, indent=1, default=_json_default)))
        fsync_dir(staging)
        os.rename(staging, version)
        fsync_dir(versions)
        link = root / name
        tmp_link = root / f".{name}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(os.path.relpath(version, root), tmp_link)
        os.replace(tmp_link, link)  # the atomic switch
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(versions, keep=version)
    return version


def _contiguous(arrays: dict) -> dict:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _prune(versions: Path, keep: Path) -> None:
    """Keep the newest ``KEEP_VERSIONS`` versions (the current one and its fallback), and clear the
    staging folders of saves whose process died (killed mid-save): they are never read, only litter."""
    done = sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for old in done[:-KEEP_VERSIONS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
    for staging in versions.glob(".staging-*"):
        if _abandoned(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _abandoned(staging: Path) -> bool:
    pid = staging.name.rsplit("-", 1)[-1]
    if pid.isdigit() and pid != str(os.getpid()):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS
    except FileNotFoundError:
        return False


def load_version(folder: Path) -> Checkpoint:
    """Load one checkpoint folder; any damage is a :class:`CheckpointError` naming what is wrong.

    The three files are opened first and then read through the open handles, so a concurrent save
    that prunes this version mid-read cannot make the read fail half-way (an unlinked file stays
    readable while open); the SHA-256 recorded in the manifest is checked on the very bytes parsed.
    """
    folder = Path(folder)
    data: dict[str, bytes] = {}
    handles = {}
    try:
        for part in (MANIFEST, WEIGHTS, ARRAYS):
            try:
                handles[part] = open(folder / part, "rb")
            except FileNotFoundError:
                raise CheckpointError(f"checkpoint {folder.name}: " + (f"no {MANIFEST}" if part == MANIFEST else f"{part} is missing")) from None
            except OSError as exc:
                raise CheckpointError(f"checkpoint {folder.name}: {part} cannot be read ({exc.strerror or exc})") from None
        for part, handle in handles.items():
            data[part] = handle.read()
    finally:
        for handle in handles.values():
            handle.close()
    try:
        meta = json.loads(data[MANIFEST].decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {folder.name}: {MANIFEST} is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder.name}: unknown format (expected format_version {FORMAT_VERSION})")
    files = meta.get("files")
    parts = {}
    for part in (WEIGHTS, ARRAYS):
        if isinstance(files, dict) and part in files and hashlib.sha256(data[part]).hexdigest() != files[part]:
            raise CheckpointError(f"checkpoint {folder.name}: {part} is corrupt (its SHA-256 does not match the manifest)")
        try:
            parts[part] = load_numpy_bytes(data[part])
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {folder.name}: {part} is truncated or corrupt ({exc})") from None
    return Checkpoint(meta, parts[WEIGHTS], parts[ARRAYS], folder)


def candidates(root: Path, name: str) -> list[Path]:
    """Version folders of ``name``, the current one first, then older ones (newest first)."""
    root = Path(root)
    link = root / check_name(name)
    current = link.resolve() if link.is_symlink() or link.is_dir() else None
    versions = root / ".versions" / name
    older = sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True) if versions.is_dir() else []
    ordered = ([current] if current and current.is_dir() else []) + [p for p in older if p != current]
    return ordered


def load(root: Path, name: str, fallback: bool = True, build: Optional[Callable[[Checkpoint], T]] = None):
    """Load checkpoint ``name``; if the current version is damaged and ``fallback`` is set, the newest
    older version that loads is used instead and ``meta['fallback_reason']`` says why.

    ``build`` (e.g. ``ModelBundle.from_checkpoint``) turns a loaded checkpoint into what the caller
    serves; a :class:`CheckpointError` from it (weights that do not fit the architecture) falls back
    too, and its result is returned. If a concurrent save switches and prunes versions while this
    reads, the read starts again from the new current version.
    """
    for attempt in range(LOAD_ATTEMPTS):
        found = candidates(root, name)
        if not found:
            if attempt + 1 < LOAD_ATTEMPTS and (Path(root) / name).is_symlink():
                # saves back to back can prune every version this listing named before it checked them
                continue
            raise CheckpointError(f"no checkpoint named {name!r} in {root} (train one: python -m musiclust train)")
        first_error = None
        for folder in found if fallback else found[:1]:
            try:
                checkpoint = load_version(folder)
                if first_error is not None:
                    checkpoint.meta["fallback_reason"] = str(first_error)
                return build(checkpoint) if build is not None else checkpoint
            except CheckpointError as exc:
                first_error = first_error or exc
        if attempt + 1 < LOAD_ATTEMPTS and candidates(root, name) != found:
            continue  # a save switched versions under us: what we tried may have been pruned
        raise first_error


def available(root: Path) -> list[str]:
    """Names of checkpoints present in ``root`` (current links or folders)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.is_symlink() and set(p.name) <= NAME_CHARS)


def save_report(root: Path, name: str, report: dict) -> Path:
    """Write a JSON report (e.g. the evaluation table) beside the checkpoints, atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{check_name(name)}.json"
    tmp = root / f".{name}.json.{uuid.uuid4().hex[:8]}.tmp"
    try:
        _write_file(tmp, lambda p: p.write_text(json.dumps(report, indent=1, default=_json_default)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_report(root: Path, name: str) -> Optional[dict]:
    """A report written by :func:`save_report`, or ``None`` when there is none or it is unreadable."""
    try:
        return json.loads((Path(root) / f"{check_name(name)}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
