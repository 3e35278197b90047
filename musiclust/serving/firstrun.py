"""The first run: the app serves at once while the default set and its models are built behind it.

On a fresh machine nothing exists yet: 490 clips to render (~3 min on 2 cores) and five models to
train (~2 min). Instead of making a person watch terminal output for minutes, the app starts and
asks :func:`ensure_first_build` to start ``python -m musiclust first-run`` in the background. That
child renders only the clips that are missing, then trains the missing models one at a time in the
app's display order (the model the app shows first is ready first) and saves each as soon as it has
trained, so every page becomes usable as soon as what it needs exists.

The build shares the retrain lock and status file of :class:`~musiclust.serving.jobs.RetrainJobs`:
two app processes (or an app and a sidebar retrain) never build at once, and the sidebar's job
panel shows the build's progress like any retrain. Killing the build loses nothing: finished clips
are valid files (written atomically by the renderer) and finished models are saved checkpoints, so
the next start resumes where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from musiclust import paths
from musiclust.errors import DataError, JobBusyError, ParameterError
from musiclust.serving import checkpoint as ckpt
from musiclust.serving.jobs import RetrainJobs

DEFAULT_DATASET = "default"
AUTO_BUILD_ENV = "MUSICLUST_FIRST_RUN"  # "off": the app never starts the build (tests; a deployment that builds apart)
EPOCHS_ENV = "MUSICLUST_FIRST_RUN_EPOCHS"  # a short build for tests; unset: the fit loop's tuned default


@dataclass(frozen=True)
class BuildPlan:
    """What a first run still has to do for one default-set variant."""

    clips_missing: int
    clips_total: int
    models_missing: tuple[str, ...]

    @property
    def done(self) -> bool:
        return not self.clips_missing and not self.models_missing


def model_order() -> tuple[str, ...]:
    """The default models (not the opt-in ones: :data:`~musiclust.models.registry.MODEL_NAMES`) in the
    order the app offers them, each after any model whose network it reuses."""
    from musiclust.models.registry import DISPLAY_ORDER, MODEL_NAMES, training_order

    return tuple(training_order(n for n in DISPLAY_ORDER if n in MODEL_NAMES))


def plan(variant: str = "natural", checkpoints: Optional[Path] = None) -> BuildPlan:
    """What is missing, read from the disk alone (cheap: no audio is decoded, no model loaded)."""
    from musiclust.data.corpus import read_manifest
    from musiclust.service import dataset_slug

    rows = read_manifest(paths.default_manifest())
    folder = paths.default_audio_root() / variant
    missing = sum(not (folder / f"{row['id']}.wav").is_file() for row in rows)
    root = Path(checkpoints or paths.checkpoints_root()) / dataset_slug(_dataset(variant))
    have = set(ckpt.available(root)) if root.is_dir() else set()
    return BuildPlan(missing, len(rows), tuple(n for n in model_order() if n not in have))


def _dataset(variant: str) -> str:
    return DEFAULT_DATASET if variant == "natural" else f"{DEFAULT_DATASET}:{variant}"


def auto_build_enabled() -> bool:
    """Whether the app may start the first run's build by itself (:data:`AUTO_BUILD_ENV` is not "off")."""
    return os.environ.get(AUTO_BUILD_ENV, "").strip().lower() != "off"


def ensure_first_build(jobs: RetrainJobs, variant: str = "natural", checkpoints: Optional[Path] = None) -> bool:
    """Start the background build when something is missing and no job runs; True when one runs now.

    Safe to call on every page load from any number of app processes: the retrain lock decides.
    Does nothing when :func:`auto_build_enabled` says no.
    """
    if not auto_build_enabled():
        return False
    todo = plan(variant, checkpoints)
    if todo.done:
        return False
    if jobs.is_running():
        return True
    args = ["--variant", variant, "--checkpoints", str(Path(checkpoints or paths.checkpoints_root())), *_epochs_args()]
    try:
        jobs.start(args, command="first-run")
    except JobBusyError:  # another process started it between the check and the start
        pass
    return True


def _epochs_args() -> list[str]:
    """``--epochs N`` when :data:`EPOCHS_ENV` asks for a shorter build (a test's), else nothing."""
    value = os.environ.get(EPOCHS_ENV, "").strip()
    if not value:
        return []
    if not value.isdigit() or int(value) < 1:
        raise ParameterError(f"{EPOCHS_ENV} must be a whole number of epochs ≥ 1, got {value!r}")
    return ["--epochs", value]


def run_first_build(
    variant: str,
    checkpoints: Path,
    *,
    jobs: int = 2,
    epochs: Optional[int] = None,
    on_clips: Callable[[int, int], None] = lambda done, total: None,
    on_model: Callable[[int, str], None] = lambda index, name: None,
    on_epoch: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[str]:
    """Render what is missing, then train and save each missing model in :func:`model_order`.

    Returns the names trained. A model that cannot train is logged and the rest go on (see
    :func:`musiclust.publish.train_and_publish`); with none trained the build fails with why.
    """
    from musiclust.data import corpus
    from musiclust.data.collection import load_default
    from musiclust.pipeline import Settings
    from musiclust.publish import train_and_publish
    from musiclust.service import dataset_slug
    from musiclust.store.table import featurize

    report = corpus.build_default_set(paths.default_audio_root(), variant=variant, jobs=jobs, manifest=paths.default_manifest(),
                                      progress=lambda done, total, _clip: on_clips(done, total), show_bar=False)
    log(report.summary())
    todo = plan(variant, checkpoints)
    if not todo.models_missing:
        return []
    table = featurize(load_default(variant), jobs=jobs)
    root = Path(checkpoints) / dataset_slug(_dataset(variant))
    published = train_and_publish(table, list(todo.models_missing), Settings(epochs=epochs), root, _dataset(variant),
                                  on_model=on_model, progress=on_epoch, should_stop=should_stop, save_each=True)
    log(published.summary())
    if not published.trained:
        raise DataError(f"no default model trained: {published.summary()}")
    return published.trained
