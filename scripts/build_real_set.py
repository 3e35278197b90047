#!/usr/bin/env python3
"""Builds musiclust's real-recording development set from Debian game soundtracks.

The embedded default set is synthetic (MIDI through a soundfont); this one is real produced audio:
the music of free games that Debian ships in its main section. Nothing of it is committed: it is
built on the machine, from installed packages, into ``data/real/`` (see docs/real-set.md)::

    data/real/<soundtrack>/<NN title>.<ext>   full tracks, as the package ships them (Ogg Vorbis)
    data/real/MANIFEST.csv                    path, soundtrack, package, licence, duration_s, sha256, piece_id, ...

One folder per soundtrack: the folder's name is the label (musiclust's ``load_folder`` reads it as the
group). Only real audio streams are taken, from each game's music folder (never its sound effects);
tracker modules and MIDI are not recordings and are left out, and so are jingles (shorter than
MIN_TRACK_SECONDS), mostly silent files, undecodable files and byte-identical duplicates, each with
its reason.

Other modes: ``--clips SECONDS`` also cuts a fixed-length excerpt from the middle of every track into
a separate folder; ``--fixture DIR`` writes a tiny set of short excerpts from the smallest packages
for the tests; ``--list`` prints what would be built and the licences. Excerpts are FLAC: libsndfile
gives every Ogg stream a random serial number, so Ogg output would differ from build to build.

Stand-alone on purpose (numpy and soundfile only): it imports nothing from musiclust.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

try:
    import numpy as np
    import soundfile as sf
except ImportError as exc:  # run with a Python that lacks the project's requirements
    sys.exit(f"build_real_set: {exc}; run it with the project's Python (scripts/setup makes .venv)")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "data" / "real"

STREAM_EXTENSIONS = (".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav")
NOT_RECORDINGS = (".xm", ".mod", ".it", ".s3m", ".mtm", ".669", ".umx", ".mid", ".midi", ".kar")
MIN_TRACK_SECONDS = 30.0  # shorter files in a music folder are jingles and stings (victory, defeat)
SILENCE_DB = -50.0  # a 100 ms frame whose mono RMS is below this counts as silence
MAX_SILENT_FRACTION = 0.25  # more silence than this is a sound effect or a padded loop, not a track
FRAME_SECONDS = 0.1

COLUMNS = (
    "path", "soundtrack", "package", "licence", "duration_s", "sha256", "piece_id",
    "title", "genre", "offset_s", "sample_rate", "channels", "format", "source", "source_sha256", "copyright",
)  # fmt: skip
REQUIRED_COLUMNS = COLUMNS[:7]
MANIFEST = "MANIFEST.csv"
CACHE = ".analysis-cache.json"
GITIGNORE_TEXT = "# built by scripts/build_real_set.py from Debian packages: never committed\n*\n"


class BuildError(Exception):
    """Something a person must fix (a missing package, a bad option); printed without a traceback."""


@dataclass(frozen=True)
class Soundtrack:
    """One game's music: a Debian package, the folder (or .pk3 archive) its tracks are in, the licence."""

    name: str  # folder name and label
    package: str
    licence: str
    copyright: str
    root: str  # a directory, or a zip archive (.pk3) when member_prefix is set
    member_prefix: Optional[str] = None
    default: bool = True  # part of the default full set
    note: str = ""
    per_file: tuple = ()  # (file-name prefix, licence, copyright) where files differ from the package


CATALOG = (
    Soundtrack("colobot", "colobot-common-sounds", "GPL-3+", "2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam",
               "/usr/share/games/colobot/music",
               note="two tracks are mostly silence (a short phrase then about a minute of nothing): skipped"),
    Soundtrack("drascula", "drascula-music", "Drascula licence (free to copy and modify; Debian main)",
               "1996-2008 Alcachofa Soft S.L.", "/usr/share/scummvm/drascula/audio",
               note="the per-language folders (en, de, ...) only link to these same files"),
    Soundtrack("hedgewars", "hedgewars-data", "GPL-2", "2004-2018 Andrey Korotaev and the Hedgewars Project",
               "/usr/share/games/hedgewars/Data/Music"),
    Soundtrack("nexuiz", "nexuiz-music", "GPL-2+", "2002-2009 Alientrap (Lee Vermeulen) and contributors",
               "/usr/share/games/nexuiz/data/music.pk3", member_prefix="sound/cdtracks/",
               note="tracks are members of a .pk3 (zip) archive, extracted byte for byte"),
    Soundtrack("pushover", "pushover-data", "GPL-3+", "2008-2018 Roberto Lorenz (music)", "/usr/share/pushover/themes"),
    Soundtrack("singularity", "singularity-music", "CC-BY-SA-3.0", "2007-2012 Max McCracken",
               "/usr/share/games/singularity/music"),
    Soundtrack("supertux", "supertux-data", "GPL-2+", "Marek Moeckel and the SuperTux team",
               "/usr/share/games/supertux2/music", note="game loops: most tracks are written to repeat"),
    Soundtrack("wesnoth", "wesnoth-1.16-music", "GPL-2+", "2003-2022 the Battle for Wesnoth project's composers",
               "/usr/share/games/wesnoth/1.16/data/core/music"),
    # Extras, built with --soundtracks all (or by name).
    Soundtrack("freedroidrpg", "freedroidrpg-data", "GPL-2+", "the FreedroidRPG team",
               "/usr/share/freedroidrpg/data/sound/music", default=False,
               note="228 MB download for 16 tracks: the package is mostly graphics"),
    Soundtrack("hyperrogue", "hyperrogue-music", "CC-BY-SA-3.0", "Shawn Parrotte, Lincoln Domina, Will Savino",
               "/usr/share/hyperrogue/music", default=False,
               note="three composers; short (1-2 min) loops",
               per_file=(("hr3-", "CC-BY-SA-3.0", "Shawn Parrotte"),
                         ("hr-domina-", "CC-BY-SA-3.0", "Lincoln Domina"),
                         ("hr-savino-", "CC-BY-SA-3.0", "Will Savino"))),
    Soundtrack("planetblupi", "planetblupi-music-ogg", "GPL-3+",
               "1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017-2018 Mathieu Schroeter",
               "/usr/share/planetblupi/music", default=False,
               note="10 tracks of 10-29 minutes: the game's loops written out many times over"),
    Soundtrack("warzone2100", "warzone2100-music", "GPL-2+", "1999-2004 Eidos Interactive; 2005-2013 Warzone 2100 Project",
               "/usr/share/games/warzone2100/music", default=False,
               note="Ogg Opus (.opus) files, 5-14 minutes each"),
)  # fmt: skip
BY_NAME = {s.name: s for s in CATALOG}
# The smallest packages whose soundtracks qualify: what CI installs for the fixture (120 MB download).
FIXTURE_SOUNDTRACKS = ("drascula", "pushover", "singularity")


# ----------------------------------------------------------------------------------------- sources
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


def safe_title(rel: str) -> str:
    stem = os.path.splitext(os.path.basename(rel))[0]
    title = re.sub(r"[^0-9A-Za-z ._()'&,+-]+", "_", stem).strip(" ._") or "track"
    return title[:80]


def read_info(candidate: Candidate) -> dict:
    with candidate.open() as f:
        return {"sample_rate": f.samplerate, "channels": f.channels, "frames": f.frames,
                "format": f"{f.format}/{f.subtype}", "duration": f.frames / f.samplerate if f.samplerate else 0.0}


def frame_levels_db(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = max(1, int(sample_rate * FRAME_SECONDS))
    usable = len(mono) // hop * hop
    if usable == 0:
        return np.array([-200.0])
    frames = mono[:usable].astype(np.float64).reshape(-1, hop)
    return 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-10)


def analyse(candidate: Candidate) -> dict:
    """Decodes the whole file: its true length, and how much of it is silence. Raises on a decode error."""
    levels, frames = [], 0
    with candidate.open() as f:
        rate = f.samplerate
        for block in f.blocks(blocksize=rate * 20, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise ValueError("the decoded samples hold NaN or Inf")
            frames += len(block)
            levels.append(frame_levels_db(block.mean(axis=1), rate))
    db = np.concatenate(levels) if levels else np.array([-200.0])
    return {"duration": frames / rate, "silent_fraction": float((db < SILENCE_DB).mean())}


def judge(soundtracks: list[Soundtrack]) -> list[Candidate]:
    """Every file of every soundtrack, with the header-only checks done: kept files get their number
    (from the sorted order, so a later skip leaves a gap instead of renumbering) and title."""
    everything, seen = [], {}
    for soundtrack in soundtracks:
        kept = []
        for rel in list_files(soundtrack):
            candidate = Candidate(soundtrack, rel)
            if candidate.ext in NOT_RECORDINGS:
                candidate.reason = "tracker module or MIDI: notes for a synthesiser, not a recording"
            elif candidate.ext not in STREAM_EXTENSIONS:
                continue  # loop points (.music), text, images: not audio at all
            else:
                candidate.sha256 = hashlib.sha256(candidate.data()).hexdigest()
                try:
                    candidate.info = read_info(candidate)
                except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason to skip
                    candidate.reason = f"cannot decode: {exc}"
                else:
                    if candidate.info["duration"] < MIN_TRACK_SECONDS:
                        candidate.reason = f"{candidate.info['duration']:.1f} s: a jingle, shorter than {MIN_TRACK_SECONDS:.0f} s"
                    elif candidate.sha256 in seen:
                        candidate.reason = f"the same bytes as {seen[candidate.sha256]}"
                    else:
                        seen[candidate.sha256] = candidate.source
                        kept.append(candidate)
                candidate.drop_data()
            everything.append(candidate)
        titles = [safe_title(c.rel) for c in kept]
        width = max(2, len(str(len(kept))))
        for number, (candidate, title) in enumerate(zip(kept, titles), start=1):
            if titles.count(title) > 1:  # the same file name in two sub-folders
                title = safe_title(candidate.rel.replace("/", " - "))
            candidate.number, candidate.title = number, f"{number:0{width}d} {title}"
    return everything


# -------------------------------------------------------------------------------------- packages
def package_installed(package: str) -> bool:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return result.returncode == 0 and "install ok installed" in result.stdout


def apt_line(packages: list[str]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def download_size(package: str) -> str:
    try:
        result = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
    except FileNotFoundError:
        return "?"
    match = re.search(r"^Size: (\d+)$", result.stdout, re.M)
    return f"{int(match.group(1)) / 1e6:.1f} MB" if match else "?"


def ensure_packages(soundtracks: list[Soundtrack], install: bool) -> None:
    missing = sorted({s.package for s in soundtracks if not package_installed(s.package)})
    if missing and install:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = sudo + apt_line(missing).split()
        print("==", " ".join(command), flush=True)
        if subprocess.run(command, env=env).returncode != 0:
            subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)
            subprocess.run(command, env=env)
        missing = sorted({s.package for s in soundtracks if not package_installed(s.package)})
    if missing:
        raise BuildError(
            f"missing Debian package(s): {', '.join(missing)}\n"
            f"install them with:  sudo {apt_line(missing)}\n"
            "(or run this builder with --install)"
        )
    for s in soundtracks:
        if not Path(s.root).exists():
            raise BuildError(f"{s.package} is installed but {s.root} is not there: another version of the package?")


# ---------------------------------------------------------------------------------------- output
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


def excerpt_flac(candidate: Candidate, seconds: float) -> tuple[bytes, float, float, dict]:
    """``seconds`` from the middle of the track as 16-bit FLAC (peaks above full scale are clipped)."""
    with candidate.open() as f:
        rate, total = f.samplerate, f.frames
        length = int(round(seconds * rate))
        if total < length:
            raise ValueError(f"{total / rate:.1f} s long, shorter than the {seconds:g} s excerpt")
        start = (total - length) // 2
        f.seek(start)
        audio = f.read(length, dtype="float32", always_2d=True)
    if len(audio) < length or not np.isfinite(audio).all():
        raise ValueError("the excerpt does not decode cleanly")
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    info = {"sample_rate": rate, "channels": audio.shape[1], "format": "FLAC/PCM_16"}
    return buffer.getvalue(), start / rate, float((frame_levels_db(audio.mean(axis=1), rate) < SILENCE_DB).mean()), info


def write_excerpts(out: Path, candidates: list[Candidate], seconds: float) -> tuple[list[dict], list[Candidate]]:
    rows, skipped = [], []
    for candidate in candidates:
        try:
            data, offset, silent, info = excerpt_flac(candidate, seconds)
        except Exception as exc:  # noqa: BLE001
            candidate.reason = f"cannot cut the excerpt: {exc}"
            skipped.append(candidate)
            continue
        if silent > MAX_SILENT_FRACTION:
            candidate.reason = f"the middle {seconds:g} s are {silent:.0%} silence"
            skipped.append(candidate)
            continue
        rel = f"{candidate.soundtrack.name}/{candidate.title}.flac"
        write_if_changed(out / rel, data)
        rows.append(row_for(candidate, rel, hashlib.sha256(data).hexdigest(), seconds, offset, info))
    return rows, skipped


# ------------------------------------------------------------------------------------------ modes
def choose(spec: Optional[str], fixture: bool) -> list[Soundtrack]:
    if spec is None:
        names = FIXTURE_SOUNDTRACKS if fixture else [s.name for s in CATALOG if s.default]
    elif spec == "all":
        names = [s.name for s in CATALOG]
    elif spec == "default":
        names = [s.name for s in CATALOG if s.default]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise BuildError(f"unknown soundtrack(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(BY_NAME)}, default, all")
    return [BY_NAME[n] for n in sorted(set(names))]


def kept_per_soundtrack(candidates: list[Candidate], limit: Optional[int]) -> list[Candidate]:
    chosen = []
    for soundtrack in sorted({c.soundtrack.name for c in candidates}):
        kept = [c for c in candidates if c.soundtrack.name == soundtrack and not c.reason]
        chosen.extend(kept[:limit] if limit else kept)
    return chosen


def spread(kept: list[Candidate], count: int) -> list[Candidate]:
    """``count`` tracks spread evenly over the sorted list (the first and the last included)."""
    if len(kept) <= count:
        return kept
    if count == 1:
        return kept[:1]
    return [kept[round(i * (len(kept) - 1) / (count - 1))] for i in range(count)]


def print_skipped(candidates: list[Candidate]) -> None:
    skipped = [c for c in candidates if c.reason]
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for c in skipped:
            print(f"  {c.soundtrack.name}: {c.rel}: {c.reason}")


def print_table(rows: list[dict]) -> None:
    print(f"{'soundtrack':<14} {'package':<24} {'tracks':>6} {'minutes':>8}  licence")
    for name in sorted({r["soundtrack"] for r in rows}):
        mine = [r for r in rows if r["soundtrack"] == name]
        minutes = sum(float(r["duration_s"]) for r in mine) / 60
        print(f"{name:<14} {mine[0]['package']:<24} {len(mine):>6} {minutes:>8.1f}  {BY_NAME[name].licence}")
    total = sum(float(r["duration_s"]) for r in rows) / 60
    print(f"{'total':<14} {'':<24} {len(rows):>6} {total:>8.1f}")


def do_list(soundtracks: list[Soundtrack], limit: Optional[int]) -> int:
    missing = []
    for s in soundtracks:
        installed = package_installed(s.package)
        print(f"== {s.name}: package {s.package} ({download_size(s.package)} download, "
              f"{'installed' if installed else 'NOT installed'})")
        print(f"   licence: {s.licence}; copyright {s.copyright}")
        print(f"   from: {s.root}{':' + s.member_prefix if s.member_prefix is not None else ''}")
        if s.note:
            print(f"   note: {s.note}")
        if not installed or not Path(s.root).exists():
            missing.append(s.package)
            continue
        candidates = judge([s])
        taken = {id(c) for c in kept_per_soundtrack(candidates, limit)}
        for c in candidates:
            if id(c) in taken:
                print(f"   take  {c.title}{c.ext}  ({c.info['duration']:.0f} s, {c.info['format']})")
            elif c.reason:
                print(f"   skip  {c.rel}: {c.reason}")
    if missing:
        print(f"\nnot installed; to build, first:  sudo {apt_line(sorted(set(missing)))}")
    print("\n(--list reads headers only; the build also decodes every file and skips undecodable or mostly silent ones)")
    return 0


def load_cache(out: Path) -> dict:
    try:
        return json.loads((out / CACHE).read_text())
    except (OSError, ValueError):
        return {}


def do_build(args, soundtracks: list[Soundtrack]) -> int:
    started = time.monotonic()
    out = Path(args.out).resolve()
    ensure_packages(soundtracks, args.install)
    prepare_out(out)
    candidates = judge(soundtracks)
    chosen = kept_per_soundtrack(candidates, args.max_per_soundtrack)
    cache, rows, wanted = load_cache(out), [], set()
    for number, candidate in enumerate(chosen, start=1):
        analysis = cache.get(candidate.sha256)
        if analysis is None:
            print(f"[{number}/{len(chosen)}] decoding {candidate.source}", flush=True)
            try:
                analysis = analyse(candidate)
            except Exception as exc:  # noqa: BLE001
                analysis = {"error": str(exc) or type(exc).__name__}
            cache[candidate.sha256] = analysis
        candidate.drop_data()
        if "error" in analysis:
            candidate.reason = f"cannot decode: {analysis['error']}"
        elif analysis["silent_fraction"] > MAX_SILENT_FRACTION:
            candidate.reason = f"{analysis['silent_fraction']:.0%} of it is silence"
        if candidate.reason:
            continue
        rel = f"{candidate.soundtrack.name}/{candidate.title}{candidate.ext}"
        dest = out / rel
        wanted.add(rel)
        in_archive = candidate.soundtrack.member_prefix is not None
        if args.symlink and not in_archive:
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
        candidate.drop_data()
        rows.append(row_for(candidate, rel, candidate.sha256, analysis["duration"], 0.0, candidate.info))
    removed = prune(out, wanted)
    write_manifest(out, rows)
    write_if_changed(out / CACHE, json.dumps(cache, sort_keys=True, indent=0).encode())
    if removed:
        print(f"removed {len(removed)} file(s) that this build does not hold")
    print_skipped(candidates)
    print_table(rows)
    print(f"{out}: {len(rows)} tracks, {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.0f} MB, "
          f"built in {time.monotonic() - started:.0f} s")
    if args.clips:
        do_clips(out, args, [c for c in chosen if not c.reason])
    return 0


def do_clips(out: Path, args, candidates: list[Candidate]) -> None:
    clips = Path(args.clips_out).resolve() if args.clips_out else out.with_name(f"{out.name}-clips-{args.clips:g}s")
    prepare_out(clips)
    rows, skipped = write_excerpts(clips, candidates, args.clips)
    prune(clips, {r["path"] for r in rows})
    write_manifest(clips, rows)
    print_skipped(skipped)
    print(f"{clips}: {len(rows)} clips of {args.clips:g} s (FLAC, from the middle of each track)")


def do_fixture(args, soundtracks: list[Soundtrack]) -> int:
    out = Path(args.fixture).resolve()
    ensure_packages(soundtracks, args.install)
    prepare_out(out)
    candidates = judge(soundtracks)
    rows, skipped = [], []
    for soundtrack in soundtracks:
        kept = [c for c in candidates if c.soundtrack is soundtrack and not c.reason]
        mine, problems = write_excerpts(out, spread(kept, args.per_soundtrack), args.seconds)
        rows.extend(mine)
        skipped.extend(problems)
        if len(mine) < args.per_soundtrack:
            raise BuildError(f"{soundtrack.name}: only {len(mine)} usable tracks for {args.per_soundtrack} excerpts")
    prune(out, {r["path"] for r in rows})
    write_manifest(out, rows)
    print_skipped(skipped)
    print(f"{out}: {len(rows)} excerpts of {args.seconds:g} s from {', '.join(s.name for s in soundtracks)}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build musiclust's real-recording development set (free game soundtracks from Debian "
        "packages) into data/real/, never committed. See docs/real-set.md.")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the full set goes (default: data/real)")
    parser.add_argument("--soundtracks", help="comma-separated names, 'default' (the default) or 'all' "
                        f"(known: {', '.join(BY_NAME)})")
    parser.add_argument("--max-per-soundtrack", type=int, metavar="N", help="take at most the first N tracks of each")
    parser.add_argument("--list", action="store_true", help="print what would be built, with the licences, and stop")
    parser.add_argument("--install", action="store_true", help="apt-get install the packages that are missing")
    parser.add_argument("--symlink", action="store_true", help="link to the installed files instead of copying them")
    parser.add_argument("--clips", type=float, metavar="SECONDS",
                        help="also cut a SECONDS-long FLAC excerpt from the middle of every track")
    parser.add_argument("--clips-out", metavar="DIR", help="where the clips go (default: <out>-clips-<SECONDS>s)")
    parser.add_argument("--fixture", metavar="DIR",
                        help="instead: write a tiny test set of short FLAC excerpts from the smallest packages")
    parser.add_argument("--per-soundtrack", type=int, default=4, help="fixture: excerpts per soundtrack (default 4)")
    parser.add_argument("--seconds", type=float, default=12.0, help="fixture: excerpt length (default 12)")
    args = parser.parse_args(argv)
    try:
        for name, value, low in (("--max-per-soundtrack", args.max_per_soundtrack, 1),
                                 ("--per-soundtrack", args.per_soundtrack, 1),
                                 ("--seconds", args.seconds, 1), ("--clips", args.clips, 1)):  # fmt: skip
            if value is not None and not (value >= low and np.isfinite(value)):
                raise BuildError(f"{name} must be at least {low}, not {value}")
        soundtracks = choose(args.soundtracks, fixture=bool(args.fixture))
        if args.list:
            return do_list(soundtracks, args.max_per_soundtrack)
        if args.fixture:
            return do_fixture(args, soundtracks)
        return do_build(args, soundtracks)
    except BuildError as exc:
        print(f"build_real_set: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
