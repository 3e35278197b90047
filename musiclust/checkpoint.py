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

import json
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy

from musiclust.errors import CheckpointError, ParameterError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ARRAYS = "arrays.safetensors"
KEEP_VERSIONS = 2
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    staging = versions / f".staging-{version.name}"
    staging.mkdir()
    try:
        meta = dict(checkpoint.meta, format_version=FORMAT_VERSION, name=name, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        meta.setdefault("versions", library_versions())
        _write_file(staging / WEIGHTS, lambda p: save_numpy(_contiguous(checkpoint.weights), str(p)))
        _write_file(staging / ARRAYS, lambda p: save_numpy(_contiguous(checkpoint.arrays), str(p)))
        _write_file(staging / MANIFEST, lambda p: p.write_text(json.dumps(meta, indent=1, default=_json_default)))
        _fsync_dir(staging)
        os.rename(staging, version)
        _fsync_dir(versions)
        link = root / name
        tmp_link = root / f".{name}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(os.path.relpath(version, root), tmp_link)
        os.replace(tmp_link, link)  # the atomic switch
        _fsync_dir(root)
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
    """Keep the newest ``KEEP_VERSIONS`` versions (the current one and its fallback)."""
    done = sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for old in done[:-KEEP_VERSIONS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def load_version(folder: Path) -> Checkpoint:
    """Load one checkpoint folder; any damage is a :class:`CheckpointError` naming what is wrong."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder.name}: no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {folder.name}: {MANIFEST} is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder.name}: unknown format (expected format_version {FORMAT_VERSION})")
    parts = {}
    for part in (WEIGHTS, ARRAYS):
        try:
            parts[part] = load_numpy(str(folder / part))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {folder.name}: {part} is missing") from None
        except (SafetensorError, OSError, ValueError) as exc:
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


def load(root: Path, name: str, fallback: bool = True) -> Checkpoint:
    """Load checkpoint ``name``; if the current version is damaged and ``fallback`` is set, the newest
    older version that loads is used instead and ``meta['fallback_reason']`` says why."""
    found = candidates(root, name)
    if not found:
        raise CheckpointError(f"no checkpoint named {name!r} in {root} (train one: python -m musiclust train)")
    first_error = None
    for folder in found if fallback else found[:1]:
        try:
            checkpoint = load_version(folder)
        except CheckpointError as exc:
            first_error = first_error or exc
            continue
        if first_error is not None:
            checkpoint.meta["fallback_reason"] = str(first_error)
        return checkpoint
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
