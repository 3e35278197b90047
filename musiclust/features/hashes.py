"""Content hashes, remembered by file stamp: a rescan of an unchanged library reads no audio bytes.

:class:`musiclust.features.mel.FeatureStore` keys features by the SHA-256 of a file's bytes, so a renamed
file still hits and an edited one misses. Hashing means reading every byte (~0.8 s per 200 MB): minutes
for a real library, at every scan. :class:`HashIndex` remembers each file's digest under its
:class:`HashStamp` and hands it back while the stamp is unchanged; any change to the stamp re-hashes.

The stamp is :class:`musiclust.store.shards.FileStamp`'s idea (path, size, mtime — what the sharded store
trusts to skip a file) with what makes it safe to trust for a content hash:

* the **resolved** path, so two spellings of one file share an entry;
* the **inode**, so a file replaced by another one (a move over it, a restore from a backup) re-hashes;
* the **ctime**, which no tool can set: an in-place edit of the same size whose mtime was put back
  (``mp3gain -p``, ``touch -r``) still re-hashes;
* **racy stamps are not remembered**: a file changed again within its filesystem's timestamp granularity
  after it was hashed could keep its stamp (as in git's "racily clean" entries), so a digest is kept
  only when the file's ctime is more than ``RACY_SECONDS`` (FAT's 2 s granularity) before hashing began,
  and the stamp is the same after hashing as before.

Storage: JSON (no pickle) in 16 buckets by path, ``<root>/<hex digit>.json``, read lazily. A bucket is
written only when it learned something, atomically (temp file, fsync, rename), merged with what is on
disk just before; two processes saving at once can still lose each other's new entries, which costs a
re-hash later, never a wrong digest (an entry is used only when its whole stamp matches). A bucket that
cannot be read is ignored: its files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from musiclust.store.shards import FileStamp

FORMAT = "musiclust-content-hashes"
VERSION = 1
RACY_SECONDS = 2.0
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes: the cache key, so a renamed file hits and an edited one misses."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()  # streamed: a long track is not read whole


@dataclass(frozen=True)
class HashStamp:
    """What must be unchanged for a remembered digest to stand: the file's :class:`FileStamp` (resolved
    path, size, mtime), its ctime and its inode — one ``stat``, no byte of content."""

    file: FileStamp
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> "HashStamp":
        resolved = Path(path).resolve()
        st = os.stat(resolved)
        return cls(FileStamp(str(resolved), int(st.st_size), int(st.st_mtime_ns)), int(st.st_ctime_ns), int(st.st_ino))

    def record(self, digest: str) -> dict:
        return {"size": self.file.size, "mtime_ns": self.file.mtime_ns, "ctime_ns": self.ctime_ns, "inode": self.inode, "sha256": digest}

    def matches(self, record: dict) -> bool:
        return (record.get("size"), record.get("mtime_ns"), record.get("ctime_ns"), record.get("inode")) == (
            self.file.size, self.file.mtime_ns, self.ctime_ns, self.inode)


class HashIndex:
    """Digests by stamp under ``root`` (see the module docstring). Not thread-safe: one per thread or process."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._buckets: dict[str, dict] = {}  # bucket name -> {path: record}, as read
        self._learned: dict[str, dict] = {}  # bucket name -> {path: record} not saved yet

    def __getstate__(self) -> dict:  # a worker process gets the location, not the entries read so far
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])

    @staticmethod
    def _bucket(path: str) -> str:
        return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[0]

    def _read(self, bucket: str) -> dict:
        try:
            data = json.loads((self.root / f"{bucket}.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return {}  # missing or damaged: its files are hashed again
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            return {}
        files = data.get("files")
        if not isinstance(files, dict):
            return {}
        return {p: r for p, r in files.items() if _valid(r)}

    def lookup(self, stamp: HashStamp) -> Optional[str]:
        """The remembered digest of a file with exactly this stamp, or None."""
        bucket = self._bucket(stamp.file.path)
        if bucket not in self._buckets:
            self._buckets[bucket] = self._read(bucket)
        record = self._learned.get(bucket, {}).get(stamp.file.path) or self._buckets[bucket].get(stamp.file.path)
        return record["sha256"] if record is not None and stamp.matches(record) else None

    def remember(self, stamp: HashStamp, digest: str, started_ns: int) -> bool:
        """Keep ``digest`` for ``stamp`` (taken before hashing began at ``started_ns``) unless the stamp is
        racy or the file changed while it was read. Returns whether it was kept; :meth:`save` writes it."""
        if started_ns - stamp.ctime_ns <= RACY_SECONDS * 1e9:
            return False
        try:
            if HashStamp.of(Path(stamp.file.path)) != stamp:
                return False
        except OSError:
            return False
        self._learned.setdefault(self._bucket(stamp.file.path), {})[stamp.file.path] = stamp.record(digest)
        return True

    @property
    def unsaved(self) -> int:
        return sum(len(v) for v in self._learned.values())

    def save(self) -> None:
        """Write every bucket that learned something, merged with its current content on disk."""
        for bucket, learned in list(self._learned.items()):
            if not learned:
                continue
            merged = {**self._read(bucket), **learned}
            self._write(bucket, merged)
            self._buckets[bucket] = merged
            del self._learned[bucket]

    def _write(self, bucket: str, files: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{bucket}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"format": FORMAT, "version": VERSION, "files": files}, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / f"{bucket}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remembered_hash(path: Path, index: HashIndex) -> str:
    """``path``'s content hash, from ``index`` while its stamp is unchanged, else read (and remembered,
    saved at once: for callers that hash a file now and then, such as a page's players, not a library scan)."""
    path = Path(path)
    try:
        stamp = HashStamp.of(path)
    except OSError:
        return content_hash(path)  # missing or unreadable: reading it says why
    digest = index.lookup(stamp)
    if digest is None:
        started = time.time_ns()
        digest = content_hash(path)
        if index.remember(stamp, digest, started):
            try:
                index.save()
            except OSError:
                pass  # an index that cannot be written only means hashing this file again next time
    return digest


def _valid(record) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) or not _DIGEST.match(record["sha256"]):
        return False
    return all(isinstance(record.get(k), int) and not isinstance(record.get(k), bool) for k in ("size", "mtime_ns", "ctime_ns", "inode"))
