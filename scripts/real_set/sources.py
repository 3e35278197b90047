"""Reading a soundtrack's files where the package put them: a plain folder, or members of a .pk3 (zip).

A Candidate is one such file before it is judged; the rest of the builder reads audio only through it.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import soundfile as sf

from .catalog import Soundtrack


@dataclass
class Candidate:
    """One audio file in a soundtrack's music folder, before it is judged."""

    soundtrack: Soundtrack
    rel: str  # path inside the folder or archive prefix, with '/'
    reason: str = ""  # why it is left out; empty when kept
    number: int = 0
    title: str = ""
    sha256: str = ""
    info: Optional[dict] = None
    analysis: Optional[dict] = None
    _data: Optional[bytes] = field(default=None, repr=False)

    @property
    def ext(self) -> str:
        return os.path.splitext(self.rel)[1].lower()

    @property
    def source(self) -> str:
        s = self.soundtrack
        return f"{s.root}:{s.member_prefix}{self.rel}" if s.member_prefix is not None else f"{s.root}/{self.rel}"

    @property
    def piece_id(self) -> str:
        slug = re.sub(r"[^0-9a-z]+", "_", os.path.splitext(self.rel)[0].lower()).strip("_")
        return f"{self.soundtrack.name}-{slug}"

    def data(self) -> bytes:
        if self._data is None:
            s = self.soundtrack
            if s.member_prefix is not None:
                with zipfile.ZipFile(s.root) as archive:
                    self._data = archive.read(s.member_prefix + self.rel)
            else:
                self._data = Path(s.root, self.rel).read_bytes()
        return self._data

    def drop_data(self) -> None:
        self._data = None

    def open(self) -> sf.SoundFile:
        s = self.soundtrack
        if s.member_prefix is not None:
            return sf.SoundFile(io.BytesIO(self.data()))
        return sf.SoundFile(str(Path(s.root, self.rel)))

    def licence(self) -> tuple[str, str]:
        name = os.path.basename(self.rel)
        for prefix, licence, holder in self.soundtrack.per_file:
            if name.startswith(prefix):
                return licence, holder
        return self.soundtrack.licence, self.soundtrack.copyright


def natural_key(rel: str) -> tuple:
    """track2 before track10; the plain text breaks ties, so the order is total and the same everywhere."""
    parts = re.split(r"(\d+)", os.path.splitext(rel)[0].lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts), rel


def list_files(soundtrack: Soundtrack) -> list[str]:
    """Every regular file under the soundtrack's folder (or archive prefix), relative with '/', in natural order."""
    root = Path(soundtrack.root)
    if soundtrack.member_prefix is not None:
        with zipfile.ZipFile(root) as archive:
            names = [n for n in archive.namelist() if n.startswith(soundtrack.member_prefix) and not n.endswith("/")]
        return sorted((n[len(soundtrack.member_prefix):] for n in names), key=natural_key)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = Path(folder, name)
            if path.is_file():
                found.append(path.relative_to(root).as_posix())
    return sorted(found, key=natural_key)


def read_info(candidate: Candidate) -> dict:
    """What the file's header says: rate, channels, length, format (nothing is decoded)."""
    with candidate.open() as f:
        return {"sample_rate": f.samplerate, "channels": f.channels, "frames": f.frames,
                "format": f"{f.format}/{f.subtype}", "duration": f.frames / f.samplerate if f.samplerate else 0.0}
