"""The first run's background build: the default set (here a tiny real manifest) and its models are
built by one background job, resumably, and never twice at once."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.firstrun import ensure_first_build, model_order, plan
from musiclust.serving.jobs import RUNNING, SUCCEEDED, RetrainJobs

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("bach_chorale", "german_folk")  # quick to render; two groups so k = 2 is known
PER_GROUP = 4
SECONDS = 6.0
HANG_GUARD_S = 900  # only guards against a hang; never a verdict on speed


@pytest.fixture()
def tiny_default(tmp_path, monkeypatch):
    """A default set of 8 real 6-s clips, with its own audio, checkpoints and job folders."""
    with open(REPO / "data" / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    picked = [r for g in GROUPS for r in [r for r in rows if r["group"] == g][:PER_GROUP]]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "duration_s": str(min(SECONDS, float(r["duration_s"])))} for r in picked)
    env = {
        "MUSICLUST_DEFAULT_MANIFEST": str(manifest),
        "MUSICLUST_DEFAULT_AUDIO": str(tmp_path / "audio"),
        "MUSICLUST_CHECKPOINTS": str(tmp_path / "checkpoints"),
        "MUSICLUST_JOBS": str(tmp_path / "jobs"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"env": env, "rows": picked, "audio": tmp_path / "audio" / "natural", "checkpoints": tmp_path / "checkpoints",
            "jobs": RetrainJobs(tmp_path / "jobs", REPO)}


def _clips(folder: Path) -> list[Path]:
    """Finished clips only: the renderer writes a dot-named temporary file and renames it when done."""
    return [p for p in folder.glob("*.wav") if not p.name.startswith(".")]


def _wait(jobs: RetrainJobs, done, what: str):
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        status = jobs.status()
        if done(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}; last status {jobs.status()}; log:\n{jobs.log_path.read_text()[-3000:]}")


def test_plan_lists_missing_clips_and_models_in_app_order(tiny_default):
    todo = plan("natural", tiny_default["checkpoints"])
    assert (todo.clips_missing, todo.clips_total) == (len(tiny_default["rows"]), len(tiny_default["rows"]))
    assert todo.models_missing == model_order() and not todo.done
    from musiclust.models.registry import SPECS

    for i, name in enumerate(model_order()):  # a model that reuses another's network comes after it
        if SPECS[name].reuses:
            assert model_order().index(SPECS[name].reuses) < i


def test_build_resumes_after_a_kill_and_never_runs_twice(tiny_default):
    jobs, audio = tiny_default["jobs"], tiny_default["audio"]
    extra = ["--epochs", "1"]
    jobs.start(["--variant", "natural", "--checkpoints", str(tiny_default["checkpoints"]), *extra], command="first-run")
    # A second app process asking for the build while it runs starts nothing: the lock is taken.
    first_id = jobs.status().job_id
    probe = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path; from musiclust.serving.firstrun import ensure_first_build;"
         "from musiclust.serving.jobs import RetrainJobs; import os;"
         "print(ensure_first_build(RetrainJobs(Path(os.environ['MUSICLUST_JOBS']), Path('.'))))"],
        cwd=REPO, env={**os.environ, **tiny_default["env"]}, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "True" and jobs.status().job_id == first_id

    # Kill the build once at least one clip exists; whatever phase it reached, finished work must survive.
    _wait(jobs, lambda s: s.state != RUNNING or len(_clips(audio)) >= 1, "a first rendered clip")
    os.killpg(jobs.status().pid, signal.SIGKILL)
    _wait(jobs, lambda s: not jobs.is_running(), "the killed build to release its lock")
    finished = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in _clips(audio)}
    assert finished

    assert ensure_first_build(jobs, "natural", tiny_default["checkpoints"]) is True
    status = _wait(jobs, lambda s: s.state != RUNNING and not jobs.is_running(), "the resumed build to end")
    assert status.state == SUCCEEDED, status.message
    for name, stamp in finished.items():  # not rendered again
        path = audio / name
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp, f"{name} was rendered again"
    assert len(_clips(audio)) == len(tiny_default["rows"])
    from musiclust.service import dataset_slug

    root = tiny_default["checkpoints"] / dataset_slug("default")
    assert set(ckpt.available(root)) == set(model_order())
    assert plan("natural", tiny_default["checkpoints"]).done
    assert ensure_first_build(jobs, "natural", tiny_default["checkpoints"]) is False  # nothing left: no job
