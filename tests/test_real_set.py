"""The real-recording fixture: short excerpts of free game soundtracks that Debian ships (docs/real-set.md).

Built by ``scripts/build_real_set.py --fixture`` from the three smallest qualifying packages
(drascula-music, pushover-data, singularity-music), which scripts/setup installs. Never skipped: on a
machine without them every test here fails, with the apt-get line to run.
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
BUILDER = REPO / "scripts" / "build_real_set.py"
SOUNDTRACKS = ("drascula", "pushover", "singularity")
PACKAGES = {"drascula": "drascula-music", "pushover": "pushover-data", "singularity": "singularity-music"}
PER_SOUNDTRACK = 4
SECONDS = 12
REQUIRED_COLUMNS = ("path", "soundtrack", "package", "licence", "duration_s", "sha256", "piece_id")


def _build(dest: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BUILDER), "--fixture", str(dest),
               "--per-soundtrack", str(PER_SOUNDTRACK), "--seconds", str(SECONDS), *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"building the real-recording fixture failed (exit {result.returncode}); it needs the Debian packages "
        f"{' '.join(PACKAGES.values())} (scripts/setup installs them):\n{result.stderr}{result.stdout}"
    )
    return result


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> tuple[Path, Path]:
    first = tmp_path_factory.mktemp("real-fixture-a")
    second = tmp_path_factory.mktemp("real-fixture-b")
    _build(first)
    _build(second)
    return first, second


def _rows(folder: Path) -> list[dict]:
    with open(folder / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_is_one_folder_per_soundtrack(builds):
    folder = builds[0]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == list(SOUNDTRACKS)
    for soundtrack in SOUNDTRACKS:
        names = sorted(p.name for p in (folder / soundtrack).iterdir())
        assert len(names) == PER_SOUNDTRACK, names
        for name in names:
            assert re.fullmatch(r"\d{2} \S.*\.flac", name), name
    loose = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert loose == [".gitignore", "MANIFEST.csv"]
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*", "the built set must ignore itself in git"


def test_manifest_describes_every_file(builds):
    folder = builds[0]
    rows = _rows(folder)
    assert set(REQUIRED_COLUMNS) <= set(rows[0]), sorted(rows[0])
    audio = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.flac"))
    assert sorted(r["path"] for r in rows) == audio
    assert len(rows) == len(SOUNDTRACKS) * PER_SOUNDTRACK
    for row in rows:
        assert row["path"].split("/")[0] == row["soundtrack"] == row["genre"]
        assert row["package"] == PACKAGES[row["soundtrack"]]
        assert row["licence"].strip() and row["copyright"].strip()
        assert row["sha256"] == hashlib.sha256((folder / row["path"]).read_bytes()).hexdigest()
        assert row["piece_id"].startswith(row["soundtrack"] + "-")
        assert abs(float(row["duration_s"]) - SECONDS) < 1e-6
        assert float(row["offset_s"]) > 0  # cut from the middle, not the (often silent) start
        assert row["source"].startswith("/usr/share/") and len(row["source_sha256"]) == 64
    # one excerpt per track here, so no two rows share a piece; and no source is taken twice
    assert len({r["piece_id"] for r in rows}) == len(rows)
    assert len({r["source_sha256"] for r in rows}) == len(rows)


def test_every_file_is_real_non_silent_audio(builds):
    for path in sorted(builds[0].rglob("*.flac")):
        info = sf.info(str(path))
        assert info.format == "FLAC" and info.samplerate >= 22050, (path.name, info)
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert len(audio) / rate > SECONDS - 0.5, path
        assert np.isfinite(audio).all()
        mono = audio.mean(axis=1)
        hop = rate // 10
        frames = mono[: len(mono) // hop * hop].reshape(-1, hop)
        level_db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-10)
        assert (level_db > -50).mean() > 0.75, f"{path.name} is mostly silence"
        assert 20 * np.log10(np.sqrt((mono**2).mean()) + 1e-10) > -40, f"{path.name} is too quiet to be music"
        # real music is not a tone: its energy is spread over many frequency bins (a sine puts ~all of it
        # in a few). The mean is removed first: some of these recordings carry a large DC offset.
        power = np.abs(np.fft.rfft(mono - mono.mean())) ** 2
        assert np.sort(power)[-10:].sum() < 0.9 * power.sum(), f"{path.name} looks like a pure tone"


def test_two_builds_are_byte_identical(builds):
    first, second = (_files(folder) for folder in builds)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"not deterministic: {different}"


def test_rebuilding_in_place_changes_nothing(builds, tmp_path):
    folder = builds[0]
    before = _files(folder)
    _build(folder)
    assert _files(folder) == before


def test_list_names_every_package_and_licence():
    result = subprocess.run([sys.executable, str(BUILDER), "--list", "--soundtracks", ",".join(SOUNDTRACKS)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for package in PACKAGES.values():
        assert f"package {package}" in result.stdout
    assert "CC-BY-SA-3.0" in result.stdout and "GPL-3+" in result.stdout


def build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILDER), *args], capture_output=True, text=True, timeout=120)


def test_bad_requests_fail_with_a_message(tmp_path):
    unknown = build("--fixture", str(tmp_path / "x"), "--soundtracks", "nope")
    assert unknown.returncode == 1 and "unknown soundtrack(s) nope" in unknown.stderr
    # neither someone's folder nor a repository (a .gitignore of its own) is taken for one the builder made
    for name, keep, text in (("someone-elses-music", "keep.txt", "not ours"), ("a-repository", ".gitignore", "*.pyc\n")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / keep).write_text(text)
        refused = build("--fixture", str(folder))
        assert refused.returncode == 1 and "not a real-set folder" in refused.stderr, name
        assert (folder / keep).read_text() == text
