"""Durable writes: what every atomic write here (checkpoints, feature shards) does after its rename.

A rename is atomic, but it is only durable once the directory that holds the new name is flushed to
disk: without this a crash right after ``os.replace`` can bring back the old name (or neither).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush the directory ``path`` (its entries: names created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` atomically: a temporary file in the same
    folder, flushed to disk, then renamed over ``path``. A reader sees the old entry or the whole new
    one, never half of one; a crash leaves no partial entry behind (the temporary file is removed).

    The shared writer of the on-disk caches (:class:`musiclust.features.mel.FeatureStore`,
    :class:`musiclust.pretrained.store.PretrainedStore`); their entries can be recomputed, so the
    folder itself is not fsynced."""
    import tempfile

    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
