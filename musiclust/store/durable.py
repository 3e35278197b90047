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
