"""Shared fixtures: real music, rendered from the corpus for the test session (never synthetic tones).

Clips are short cuts (8 s) of real manifest rows, rendered through the same path as the default set
and kept under ``data/cache/test-clips`` so a second test run does not render them again.
"""

from __future__ import annotations

import csv
import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIP_CACHE = REPO / "data" / "cache" / "test-clips"
TEST_GROUPS = ("bach_chorale", "monteverdi", "german_folk", "fiddle_tune")
PER_GROUP = 5
CLIP_SECONDS = 8.0
TRAIN_BRIEFLY = {"epochs": 2, "latent_dim": 8, "seed": 0}  # the session's trained models: real, small, quick


def _run_temp(tmp_path_factory) -> Path:
    """The test run's temporary folder: with pytest-xdist every worker has its own below one shared
    folder, and the session fixtures that cost minutes (trained models) are built once in the shared one."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``run temp / name``, made by ``build(folder)`` by the first process that asks, under a file lock;
    every other worker waits for it and then uses it as it is (read-only, as the session fixtures are)."""
    base = _run_temp(tmp_path_factory)
    target, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)  # a build that failed half-way in another worker
            target.mkdir(parents=True)
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session", autouse=True)
def _test_environment(tmp_path_factory):
    """The tests' music folders live under pytest's temporary folder: make it a library root, beside
    the repo's data/, for every process the tests start (the app and app-started retrains check roots).
    Tests of the roots themselves set their own value."""
    import os

    roots = os.pathsep.join([str(REPO / "data"), str(_run_temp(tmp_path_factory))])
    # ...and no app a test starts builds the repo's default set behind it: the first-run tests turn it on.
    wanted = {"MUSICLUST_LIBRARY_ROOTS": roots, "MUSICLUST_FIRST_RUN": "off"}
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    yield roots
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _keep_the_main_module():
    """Streamlit's AppTest leaves ``sys.modules["__main__"]`` set to the page it ran; a process started
    later with the ``spawn`` method (the corpus renderer, Dask's workers) would then run the app script
    as its main module and die. Put pytest's own back after every test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``MUSICLUST_NO_SKIPS=1`` (set by ``scripts/run-tests``, so by CI) a skipped test is a failure
    naming its reason: a green run means every test ran, on any clean machine."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("MUSICLUST_NO_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and this run allows no skip (MUSICLUST_NO_SKIPS=1): {reason}"


# The longest files first (wall seconds each on the 2-core machine, two workers, 2026-12-03: 160 down to
# 15): with --no-loadscope-reorder (scripts/run-tests) the workers take a file at a time in this order, so
# no long file starts last and runs alone while the other worker idles. Scheduling only: a file missing
# here runs after these, in collection order.
LONGEST_FIRST = (
    "test_bench_projection.py", "test_bench_browser.py", "test_bench.py", "test_bench_fresh.py", "test_browser_library.py",
    "test_soak.py", "test_browser.py", "test_app.py", "test_pipeline.py", "test_train_cli.py", "test_browser_upload.py",
    "test_scale.py", "test_firstrun.py", "test_distributed.py", "test_firstrun_page.py", "test_faults.py", "test_corpus.py",
    "test_musicnn_vae.py", "test_app_sidebar.py", "test_determinism.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file


@pytest.fixture(autouse=True)
def _browser_present(request):
    """A browser test fails, never skips, when Chromium is missing: CI installs it (``scripts/setup
    --browser``), and a skip there would pass a run that never opened the app in a browser. Elsewhere,
    deselect them: ``-m "not browser"``."""
    if request.node.get_closest_marker("browser"):
        from bench.browser import browser_problem

        if problem := browser_problem():
            pytest.fail(f"{problem}; run scripts/setup --browser, or deselect these tests with -m 'not browser'", pytrace=False)


def _manifest_rows() -> list[dict]:
    with open(REPO / "data" / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pick_rows() -> list[dict]:
    """The first PER_GROUP manifest rows of each test group, cut to CLIP_SECONDS."""
    picked = []
    for group in TEST_GROUPS:
        rows = [r for r in _manifest_rows() if r["group"] == group][:PER_GROUP]
        for r in rows:
            picked.append({**r, "duration_s": str(min(CLIP_SECONDS, float(r["duration_s"])))})
    return picked


def _render(rows: list[dict]) -> dict[str, Path]:
    from concurrent.futures import ProcessPoolExecutor

    from musiclust.data.corpus import render_clip

    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    todo = [r for r in rows if not (CLIP_CACHE / f"{r['id']}.wav").is_file()]
    with ProcessPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(render_clip, r, "natural", None, CLIP_CACHE / f"{r['id']}.wav", 120.0) for r in todo]:
            future.result()
    return {r["id"]: CLIP_CACHE / f"{r['id']}.wav" for r in rows}


def pytest_sessionstart(session):
    """Render the session's clips once, in the controlling process, before any test runs: with
    pytest-xdist (``scripts/run-tests`` runs ``-n 2``) the workers then find them cached instead of
    rendering the same files at once. Rendered clips are kept, so later runs only check they exist."""
    if not hasattr(session.config, "workerinput"):
        _render(_pick_rows())


@pytest.fixture(scope="session")
def real_rows() -> list[dict]:
    """Manifest rows of the rendered test clips (real groups, titles and lyrics)."""
    return _pick_rows()


@pytest.fixture(scope="session")
def real_clips(real_rows) -> dict[str, Path]:
    """Clip id -> path of a real 8 s, 22,050 Hz mono WAV rendered from the corpus."""
    return _render(real_rows)


@pytest.fixture(scope="session")
def real_clip_paths(real_clips) -> list[Path]:
    """Paths of the real clips, groups interleaved so the first few span several groups."""
    paths = list(real_clips.values())
    return [paths[i + j * PER_GROUP] for i in range(PER_GROUP) for j in range(len(TEST_GROUPS))]


@pytest.fixture(scope="session")
def real_music_folder(tmp_path_factory, real_rows, real_clips) -> Path:
    """A user-style music folder (``group/track.wav`` + ``track.txt`` lyrics) of the real clips."""

    def build(root: Path) -> None:
        for row in real_rows:
            folder = root / row["group"]
            folder.mkdir(exist_ok=True)
            shutil.copy(real_clips[row["id"]], folder / f"{row['id']}.wav")
            if row["lyrics"]:
                (folder / f"{row['id']}.txt").write_text(row["lyrics"], encoding="utf-8")

    return _built_once(tmp_path_factory, "music", build)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """The session's feature cache: a process given it reads the features the session computed."""
    return _built_once(tmp_path_factory, "features", lambda folder: None)  # entries are written atomically: shared


@pytest.fixture(scope="session")
def real_table(real_music_folder, feature_cache):
    """The real music folder, featurized (cache in :func:`feature_cache`)."""
    from musiclust.data.collection import load_folder
    from musiclust.store.table import featurize

    return featurize(load_folder(real_music_folder), cache_dir=feature_cache, jobs=2)


@pytest.fixture(scope="session")
def real_segments(real_table):
    """12 real clips in 3 groups (4 each), as the pipeline shapes them for the models.

    Returns ``{"segments": [(n_i, 128, 128) float32 standardised per band], "labels": (12,) int64}``.
    """
    from musiclust.store.table import MelNormalizer, track_segments

    labels = real_table.label_indices()
    rows = [i for g in range(3) for i in (labels == g).nonzero()[0][:4]]
    mels = [real_table.mels[i] for i in rows]
    norm = MelNormalizer.fit(mels)
    segs = [track_segments(m, norm, real_table.config.segment_frames) for m in mels]
    return {"segments": segs, "labels": labels[rows].astype("int64")}


@pytest.fixture(scope="session")
def trained_checkpoints(real_table, real_music_folder, tmp_path_factory) -> Path:
    """A checkpoints root with every model trained briefly on the real music folder.

    Returns the root; the models live in ``root / dataset_slug(str(real_music_folder))``, which is
    what ``Service(str(real_music_folder), root)`` reads.
    """
    from musiclust.serving import checkpoint as ckpt
    from musiclust.pipeline import MODEL_NAMES, Settings, train_models
    from musiclust.service import dataset_slug

    def build(root: Path) -> None:
        bundles = train_models(real_table, list(MODEL_NAMES), Settings(**TRAIN_BRIEFLY))
        for name, bundle in bundles.items():
            ckpt.save(root / dataset_slug(str(real_music_folder)), name, bundle.to_checkpoint())

    return _built_once(tmp_path_factory, "checkpoints", build)


@pytest.fixture(scope="session")
def default_set_checkpoints(real_rows, real_clips, feature_cache, tmp_path_factory) -> Path:
    """A checkpoints root holding real *default-set* models (``root / "default"``), which a clean clone
    never has: every model trained briefly on the session's clips, a subset of the default set laid out
    as ``python -m musiclust data`` renders it (``<audio root>/natural/<id>.wav``) and read by the
    default-set loader (manifest titles, groups and lyrics). With ``MUSICLUST_CHECKPOINTS`` set to it and
    ``MUSICLUST_DATA`` unset, the app shows the default set as after ``python -m musiclust train``: models
    and the evaluation report beside the baselines.
    """
    from musiclust.data.collection import load_default
    from musiclust.pipeline import MODEL_NAMES, Settings
    from musiclust.publish import train_and_publish
    from musiclust.store.table import featurize

    def build(target: Path) -> None:
        audio_root = target / "default-set"
        (audio_root / "natural").mkdir(parents=True)
        for row in real_rows:
            (audio_root / "natural" / f"{row['id']}.wav").symlink_to(real_clips[row["id"]])
        table = featurize(load_default("natural", audio_root=audio_root), cache_dir=feature_cache, jobs=2)
        report = train_and_publish(table, list(MODEL_NAMES), Settings(**TRAIN_BRIEFLY), target / "checkpoints" / "default", "default")
        assert report.trained == list(MODEL_NAMES), report.summary()  # the page tests need every model

    return _built_once(tmp_path_factory, "default-models", build) / "checkpoints"


# --- the app pointed at the session's trained models (AppTest) -----------------------------------
@pytest.fixture
def app_env(monkeypatch, trained_checkpoints, real_music_folder, tmp_path):
    """The app pointed at the tiny trained models (read-only use)."""
    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(trained_checkpoints))
    monkeypatch.setenv("MUSICLUST_DATA", str(real_music_folder))
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    return trained_checkpoints, str(real_music_folder)


@pytest.fixture
def own_env(monkeypatch, trained_checkpoints, real_music_folder, tmp_path):
    """The app on a private copy of the trained models, for tests that retrain or write reports."""
    root = tmp_path / "checkpoints"
    shutil.copytree(trained_checkpoints, root, symlinks=True)
    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(root))
    monkeypatch.setenv("MUSICLUST_DATA", str(real_music_folder))
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    return root, str(real_music_folder), tmp_path / "jobs"
