"""Background retraining: one run at a time, status on disk, cancel, and nothing lost on failure.

The app never trains in its own process: :class:`RetrainJobs` starts ``python -m musiclust train``
as a child process that reports progress to a JSON status file. One retrain at a time is enforced
with an exclusive ``flock`` on a lock file, taken by the starter and inherited by the child, so it
holds across browser sessions, threads and processes, and is released by the kernel if the child
dies. The child saves the models that trained (:func:`musiclust.publish.train_and_publish`) once all
were tried, each by an atomic switch (:mod:`musiclust.serving.checkpoint`): a model that could not
train, and every model of a failed or cancelled run, keeps its previous version in use.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from musiclust.errors import JobBusyError, ParameterError

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"


@dataclass
class JobStatus:
    """What a person sees of a retrain: state, where it is, and why it ended."""

    state: str = "idle"
    job_id: str = ""
    pid: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float = 0.0
    model: str = ""
    model_index: int = 0
    n_models: int = 0
    epoch: int = 0
    n_epochs: int = 0
    loss: Optional[float] = None
    message: str = ""
    args: list = field(default_factory=list)
    # when finished: the models saved, and those not, each with why ("skipped: …" / "failed: …")
    trained: list = field(default_factory=list)
    not_trained: dict = field(default_factory=dict)
    phase: str = "train"  # "render" while a first run renders the default set, then "train"
    clips_done: int = 0
    clips_total: int = 0
    phase_started_at: float = 0.0

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] of the current phase: clips rendered, or models and epochs trained."""
        if self.state == SUCCEEDED:
            return 1.0
        if self.phase == "render":
            return self.clips_done / self.clips_total if self.clips_total else 0.0
        if not self.n_models or not self.n_epochs:
            return 0.0
        return min(1.0, (self.model_index + self.epoch / self.n_epochs) / self.n_models)

    @property
    def seconds_left(self) -> Optional[float]:
        """Estimated time left in the current phase from its pace so far (``None`` before any progress)."""
        done = self.fraction
        if self.state != RUNNING or done <= 0:
            return None
        elapsed = self.updated_at - (self.phase_started_at or self.started_at)
        return max(0.0, elapsed * (1 - done) / done)


def write_status(path: Path, status: JobStatus) -> None:
    """Atomically replace the status file (readers never see half a JSON document)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status)))
    os.replace(tmp, path)


def read_status(path: Path) -> JobStatus:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return JobStatus()
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return JobStatus(state=FAILED, message="the status file is unreadable")
    known = JobStatus.__dataclass_fields__
    return JobStatus(**{k: v for k, v in data.items() if k in known})


class StatusReporter:
    """The child's side: a progress callback that writes the status file, and the cancel check."""

    def __init__(self, status_path: Path, cancel_path: Path, job_id: str, args: list, n_models: int):
        self.status_path, self.cancel_path = Path(status_path), Path(cancel_path)
        now = time.time()
        self.status = JobStatus(RUNNING, job_id, os.getpid(), now, now, n_models=n_models, args=args, message="starting")
        write_status(self.status_path, self.status)

    def model_started(self, index: int, name: str) -> None:
        self.status.model_index, self.status.model, self.status.epoch = index, name, 0
        self.status.message = f"training {name}"
        self._write()

    def epoch_done(self, epoch: int, n_epochs: int, losses: dict, seconds: float) -> None:
        self.status.epoch, self.status.n_epochs = epoch, n_epochs
        value = next((losses[k] for k in ("val_loss", "train_loss", "loss") if losses.get(k) is not None), None)
        self.status.loss = float(value) if value is not None else None
        self._write()

    def clips_rendered(self, done: int, total: int) -> None:
        """A first run's render phase: ``done`` of ``total`` default-set clips exist."""
        if self.status.phase != "render":
            self.status.phase, self.status.phase_started_at = "render", time.time()
        self.status.clips_done, self.status.clips_total = done, total
        self.status.message = f"rendering the default set: {done} of {total} clips"
        self._write()

    def training(self, n_models: int) -> None:
        """The training phase starts, with ``n_models`` to train."""
        self.status.phase, self.status.phase_started_at, self.status.n_models = "train", time.time(), n_models
        self._write()

    def note(self, message: str) -> None:
        self.status.message = message
        self._write()

    def should_stop(self) -> bool:
        return self.cancel_path.exists()

    def finish(self, state: str, message: str, trained: Optional[list] = None, not_trained: Optional[dict] = None) -> None:
        self.status.state, self.status.message, self.status.finished_at = state, message, time.time()
        self.status.trained, self.status.not_trained = list(trained or []), dict(not_trained or {})
        self._write()

    def _write(self) -> None:
        self.status.updated_at = time.time()
        write_status(self.status_path, self.status)


class RetrainJobs:
    """The app's side: start, watch and cancel the one background retrain."""

    def __init__(self, state_dir: Path, repo_root: Path):
        self.state_dir = Path(state_dir)
        self.repo_root = Path(repo_root)
        self.status_path = self.state_dir / "retrain.json"
        self.cancel_path = self.state_dir / "retrain.cancel"
        self.lock_path = self.state_dir / "retrain.lock"
        self.log_path = self.state_dir / "retrain.log"

    def start(self, train_args: list[str], command: str = "train") -> JobStatus:
        """Start ``python -m musiclust <command> <train_args>`` in the background (``train``, or
        ``first-run``: render the default set and train its missing models).

        Raises :class:`JobBusyError` when a retrain is already running (in any session or process).
        """
        if any(not isinstance(a, str) for a in train_args):
            raise ParameterError("train arguments must be strings")
        if command not in ("train", "first-run"):
            raise ParameterError(f"unknown job command {command!r}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JobBusyError("a retrain is already running; wait for it to finish or cancel it") from None
        try:
            self.cancel_path.unlink(missing_ok=True)
            job_id = f"job-{time.time_ns()}"
            args = [*train_args, "--status-file", str(self.status_path), "--cancel-file", str(self.cancel_path), "--job-id", job_id]
            # The status file is written before the child starts, so a reload right after sees "running".
            write_status(self.status_path, JobStatus(RUNNING, job_id, 0, time.time(), time.time(), args=train_args, message="starting"))
            with open(self.log_path, "wb") as log:
                child = subprocess.Popen(
                    [sys.executable, "-m", "musiclust", command, *args],
                    cwd=self.repo_root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),  # the child inherits the lock; it is released when the child exits
                    start_new_session=True,
                )
            status = read_status(self.status_path)
            if status.job_id == job_id and not status.pid:
                status.pid = child.pid
                write_status(self.status_path, status)
            self._child = child  # reaped by poll() in status()
            return status
        finally:
            os.close(fd)

    def is_running(self) -> bool:
        """True while some process holds the retrain lock."""
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def status(self) -> JobStatus:
        """The last run's status; a run whose process died without saying so is reported as failed."""
        child = getattr(self, "_child", None)
        if child is not None:
            child.poll()
        status = read_status(self.status_path)
        if status.state == RUNNING and not self.is_running() and time.time() - status.started_at > 5:
            status.state, status.finished_at = FAILED, time.time()
            status.message = f"the training process stopped unexpectedly (see {self.log_path.name}); the previous models are still in use"
            write_status(self.status_path, status)
        return status

    def cancel(self) -> None:
        """Ask the running retrain to stop at its next batch; it then exits leaving the old models."""
        if self.is_running():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.cancel_path.touch()

    def kill(self) -> None:
        """Stop the child at once (used when it ignores a cancel)."""
        status = read_status(self.status_path)
        if status.pid and self.is_running():
            try:
                os.killpg(status.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
