"""What the sidebar chose and the shared, cached resources: the data set's :class:`Service` and the retrain jobs.

Configuration comes from the environment so tests (and people) can point the app elsewhere:
``MUSICLUST_DATA`` (the data set shown first, default ``default``), ``MUSICLUST_CHECKPOINTS`` and
``MUSICLUST_JOBS`` (read by :func:`musiclust.paths.checkpoints_root` and :func:`musiclust.paths.jobs_dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

from musiclust.data.known import LibraryChoice, known_libraries, last_library
from musiclust.data.roots import check_spec
from musiclust.errors import MusiclustError
from musiclust.paths import DEFAULT_AUDIO_ROOT, REPO_ROOT, checkpoints_root, jobs_dir
from musiclust.service import ModelInfo, Service, dataset_slug, model_catalogue
from musiclust.serving.jobs import RetrainJobs

PIANO = "default:piano"


def allowed(spec: str) -> bool:
    """Whether the data set may be read: the default set, or a folder or CSV under the library roots."""
    try:
        check_spec(spec)
    except MusiclustError:
        return False
    return True


def remembered() -> Optional[LibraryChoice]:
    """The library chosen last (in any session), if it is still under the library roots."""
    choice = last_library()
    return choice if choice is not None and allowed(choice.data) else None


def initial_dataset() -> str:
    """The data set shown first: the one chosen last, else ``MUSICLUST_DATA``, else the default set."""
    choice = remembered()
    return choice.data if choice else os.environ.get("MUSICLUST_DATA") or "default"


def dataset_options() -> list[str]:
    """The data sets offered in the sidebar: the one shown first, every data set with trained models
    (newest first), the configured one (``MUSICLUST_DATA``), the default set and its all-piano variant
    when rendered or trained; each only if under the library roots (a folder or CSV is typed in)."""
    options = [initial_dataset(), *(library.data for library in known_libraries(checkpoints_root()))]
    options += [os.environ.get("MUSICLUST_DATA") or "default", "default"]
    if (DEFAULT_AUDIO_ROOT / "piano").is_dir() or (checkpoints_root() / dataset_slug(PIANO)).is_dir():
        options.append(PIANO)
    return [spec for spec in dict.fromkeys(options) if allowed(spec)]


def models_count(spec: str) -> int:
    """How many trained models a data set has (for its label in the list)."""
    try:
        return len(get_service(spec, str(checkpoints_root())).models())
    except MusiclustError:
        return 0


# --- cached resources: one per server process ----------------------------------------------------
@st.cache_resource(show_spinner=False)
def get_service(dataset: str, root: str) -> Service:
    """The data set's door to its trained models; it loads each model once per checkpoint version."""
    return Service(dataset, Path(root))


# The model is loaded this long after the upload page that waits for a file was run: importing torch and
# loading takes ~2 s of CPU and holds the GIL, which beside the page's own run would delay the first page.
WARM_DELAY_S = 1.0


def warm_model(ctx: Context) -> None:
    """Load the model in use in the background (once per Service, i.e. per server process until a retrain
    clears the caches, and per model version) while the page waits for a person to choose a file: their
    first upload then finds it loaded."""
    if ctx.model is not None:
        ctx.service.warm_soon(ctx.model, WARM_DELAY_S)


@st.cache_resource(show_spinner=False)
def get_jobs(state_dir: str) -> RetrainJobs:
    return RetrainJobs(state_dir=Path(state_dir), repo_root=REPO_ROOT)


def jobs() -> RetrainJobs:
    return get_jobs(str(jobs_dir()))


# --- the sidebar's choices ---------------------------------------------------------------------
@dataclass
class Context:
    """What the sidebar chose: the data set, its trained models and the model in use."""

    dataset: str
    root: Path
    models: list[str]
    model: Optional[str]

    @property
    def service(self) -> Service:
        return get_service(self.dataset, str(self.root))

    def version(self, name: Optional[str] = None) -> str:
        """The checkpoint version of ``name`` (default: the model in use); a retrain changes it."""
        return self.service.version(name or self.model)

    def info(self, name: Optional[str] = None) -> ModelInfo:
        """The facts of ``name`` (default: the model in use), loading it once per version."""
        with st.spinner("Loading the model…"):
            return self.service.model(name or self.model)


def preferred_model(models: list[str]) -> Optional[str]:
    """The first trained model in the catalogue's display order."""
    for entry in model_catalogue():
        if entry.name in models:
            return entry.name
    return models[0] if models else None


def context() -> Context:
    """The sidebar's choices (the defaults before the sidebar ran)."""
    dataset = st.session_state.get("_dataset") or initial_dataset()
    root = checkpoints_root()
    try:
        models = get_service(dataset, str(root)).models()
    except MusiclustError:
        models = []
    model = st.session_state.get("model_choice")
    if model not in models:
        model = preferred_model(models)
    return Context(dataset, root, models, model)
