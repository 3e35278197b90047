"""Every default location in one place, so the CLI, the app, the benchmark and the tests agree.

The app and the CLI take overrides from the environment (``MUSICLUST_CHECKPOINTS``, ``MUSICLUST_JOBS``);
a function reads the environment at call time, so a test or a person can point a running process
elsewhere without editing code.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
DEFAULT_MANIFEST = DATA_DIR / "manifest.csv"  # the default set's committed selection rule output
DEFAULT_AUDIO_ROOT = DATA_DIR / "default"  # rendered default-set clips, one folder per variant
CACHE_DIR = DATA_DIR / "cache"
FEATURE_CACHE = CACHE_DIR / "features"  # per-file feature cache (musiclust.features.mel.FeatureStore)
PRETRAINED_CACHE = CACHE_DIR / "pretrained"  # per-file MusiCNN embeddings (musiclust.pretrained.store.PretrainedStore)
PREVIEW_CACHE = CACHE_DIR / "previews"  # per-file MP3 previews for the app's players (musiclust.serving.previews)
FEATURE_STORE = CACHE_DIR / "feature-store"  # sharded store written by `python -m musiclust features`
CORPUS_EVENT_CACHE = CACHE_DIR / "corpus_events"
CHECKPOINTS = REPO_ROOT / "checkpoints"
JOBS_DIR = DATA_DIR / "jobs"
RESULTS_DIR = REPO_ROOT / "docs" / "results"  # results files of `evaluate --save` (committed; tables render from them)


def checkpoints_root() -> Path:
    """The checkpoints root in force: ``MUSICLUST_CHECKPOINTS`` or ``checkpoints/``."""
    return Path(os.environ.get("MUSICLUST_CHECKPOINTS") or CHECKPOINTS).resolve()


def jobs_dir() -> Path:
    """Where background retrain jobs keep their status: ``MUSICLUST_JOBS`` or ``data/jobs/``."""
    return Path(os.environ.get("MUSICLUST_JOBS") or JOBS_DIR).resolve()


def default_manifest() -> Path:
    """The default set's manifest in force: ``MUSICLUST_DEFAULT_MANIFEST`` or ``data/manifest.csv``
    (a test or a demo points the app at a smaller set this way)."""
    return Path(os.environ.get("MUSICLUST_DEFAULT_MANIFEST") or DEFAULT_MANIFEST)


def default_audio_root() -> Path:
    """Where the default set's clips are rendered: ``MUSICLUST_DEFAULT_AUDIO`` or ``data/default/``."""
    return Path(os.environ.get("MUSICLUST_DEFAULT_AUDIO") or DEFAULT_AUDIO_ROOT)
