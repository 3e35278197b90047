"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page renders on real trained models,
an upload is placed, a corrupt upload changes nothing, a retrain switches the model in, and a second
retrain while one runs is refused.

The app reads ``MUSICLUST_CHECKPOINTS`` / ``MUSICLUST_DATA`` / ``MUSICLUST_JOBS``; here they point at the
``trained_checkpoints`` fixture (every model trained briefly on real rendered clips) and a temporary job folder.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import tree_digest, wait_until

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = ("pages/upload.py", "pages/latent_map.py", "pages/reconstructions.py", "pages/metrics.py")
TIMEOUT = 180


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


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


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def upload(at: AppTest, path: Path, name: str | None = None, data: bytes | None = None) -> AppTest:
    at.file_uploader[0].set_value((name or path.name, data if data is not None else path.read_bytes(), "audio/wav"))
    return at.run()


# --- every page -----------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_trained_models(app_env, page):
    at = open_app(page)
    no_exception(at)
    assert at.title, "every page has a title"
    assert not any("could not be loaded" in t for t in texts(at, "error"))
    assert at.sidebar.selectbox(key="model_choice").options, "the sidebar lists the trained models"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_default_models(monkeypatch, tmp_path, default_set_checkpoints, page):
    """The app as opened after ``python -m musiclust train``: no data set named, so the default set, on
    real default-set models (trained for the session: a clean clone has none)."""
    monkeypatch.delenv("MUSICLUST_DATA", raising=False)
    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(default_set_checkpoints))
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    at = open_app(page)
    no_exception(at)
    assert not texts(at, "error")
    assert not any("python -m musiclust train" in t for t in texts(at, "info") + texts(at, "warning")), "models found"
    assert at.sidebar.selectbox(key="model_choice").options, "the sidebar lists the default models"


def test_no_models_says_what_to_run(monkeypatch, tmp_path, real_music_folder):
    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(tmp_path / "empty"))
    monkeypatch.setenv("MUSICLUST_DATA", str(real_music_folder))
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    for page in PAGES:
        at = open_app(page)
        no_exception(at)
        said = " ".join(texts(at, "info") + texts(at, "warning"))
        assert "python -m musiclust train" in said
    assert not (tmp_path / "jobs").exists(), "nothing is trained at start-up"


def test_reconstructions_play_audio_and_name_the_label(app_env):
    at = open_app("pages/reconstructions.py")
    no_exception(at)
    infos = " ".join(texts(at, "info"))
    assert "beta_cvae" in infos and "decoder was given" in infos, "the page says which label the conditioned decoder got"
    at.multiselect(key="recon_models").set_value(["conv_vae"]).run()
    at.toggle(key="recon_render").set_value(True).run()
    no_exception(at)
    assert len(at.get("audio")) >= 3, "the real file, the original via Griffin-Lim and the reconstruction"


def test_metrics_page_with_a_report(own_env):
    from musiclust.serving import checkpoint as ckpt
    from musiclust.service import Service

    root, dataset, _ = own_env
    service = Service(dataset, root)
    rows = []
    for seed in (0, 1):
        rows.append({"model": "random", "seed": seed, "silhouette": 0.0, "calinski_harabasz": 1.0, "davies_bouldin": 9.0,
                     "ari": 0.0, "nmi": 0.01 * seed, "purity": 0.3, "conditioned_on_label": False})
        for name in service.models():
            bundle = service.bundle(name)
            rows.append({"model": name, "seed": seed, **bundle.meta["metrics"], "conditioned_on_label": bundle.conditioned_on_label,
                         "reconstruction_mse_db": bundle.meta.get("reconstruction_mse_db")})
    ckpt.save_report(service.root, "evaluation", {"seeds": 2, "rows": rows})
    at = open_app("pages/metrics.py")
    no_exception(at)
    assert any("beta_cvae" in w and "conditioned" in w for w in texts(at, "warning")), "visible note on the conditioned row"
    assert any("over 2 seeds" in m for m in texts(at, "markdown"))
    table = at.dataframe[0].value
    assert {"random", "conv_vae", "beta_cvae ⚠"} <= set(table["model"])


# --- upload -------------------------------------------------------------------------------------
def test_upload_shows_cluster_and_neighbours(app_env, real_clip_paths, monkeypatch):
    at = open_app()
    no_exception(at)
    started = time.perf_counter()
    upload(at, real_clip_paths[0])
    elapsed = time.perf_counter() - started
    no_exception(at)
    assert not texts(at, "error")
    assert any("lands in cluster" in s for s in texts(at, "success"))
    metrics = {m.label: m.value for m in at.metric}
    from musiclust.service import Service

    root, dataset = app_env
    expected = Service(dataset, root).analyse(at.session_state["model_choice"], real_clip_paths[0]).placement
    assert metrics["Cluster"] == str(expected.cluster), "the page shows the service's answer for the same file"
    assert any("Five nearest tracks" in h for h in texts(at, "subheader"))
    assert len(at.get("audio")) >= 5 + 1, "five neighbours playable (plus the typical track / the upload)"
    assert at.session_state["last_upload"]["name"] == real_clip_paths[0].name
    print(f"upload answered in {elapsed:.2f} s (AppTest run, model already loaded)")

    monkeypatch.setattr(Service, "analyse", lambda *a, **k: (_ for _ in ()).throw(AssertionError("analysed again")))
    at.run()  # a rerun answers from the session cache, without analysing the file again
    no_exception(at)
    assert any("lands in cluster" in s for s in texts(at, "success"))


def test_upload_without_lyrics_says_how_hybrid_fusion_reads_it(app_env, real_clip_paths):
    at = open_app()
    at.sidebar.selectbox(key="model_choice").set_value("conv_vae_fusion").run()
    upload(at, real_clip_paths[0])
    no_exception(at)
    assert any("without words (instrumental)" in c for c in texts(at, "caption"))
    at.sidebar.selectbox(key="model_choice").set_value("mvae_poe").run()
    no_exception(at)
    assert not any("without words" in c for c in texts(at, "caption")), "the product of experts uses the audio alone"


def test_upload_with_lyrics_is_shown_as_text(app_env, real_clip_paths):
    at = open_app()
    at.text_area(key="lyrics").set_value("<script>alert(1)</script> **not bold**").run()
    upload(at, real_clip_paths[1])
    no_exception(at)
    assert "<script>alert(1)</script> **not bold**" in texts(at, "text"), "lyrics shown verbatim as plain text"
    assert not any("<script>" in m for m in texts(at, "markdown"))


def test_corrupt_upload_shows_an_error_and_changes_nothing(app_env, real_clip_paths):
    root, _ = app_env
    before = tree_digest(root)
    at = open_app()
    upload(at, real_clip_paths[2])
    good = at.session_state["last_upload"]["digest"]
    for name, data in (("broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10), ("empty.mp3", b""),
                       ("text.ogg", "not audio at all".encode())):
        upload(at, real_clip_paths[2], name=name, data=data)
        no_exception(at)
        errors = texts(at, "error")
        assert errors and name in errors[0], errors
        assert not texts(at, "success"), "a bad file shows the error and nothing else"
        assert at.session_state["last_upload"]["digest"] == good, "the last good upload is kept"
    assert tree_digest(root) == before, "checkpoint files are byte-for-byte unchanged"


# --- retrain ------------------------------------------------------------------------------------

def start_from_sidebar(at: AppTest, models: list[str], epochs: int) -> AppTest:
    at.multiselect(key="retrain_models").set_value(models)
    at.number_input(key="retrain_epochs").set_value(epochs)
    at.number_input(key="retrain_latent").set_value(8)
    return at.button(key="retrain_start").click().run()


def test_retrain_runs_and_switches_the_model(own_env):
    from musiclust.serving.jobs import SUCCEEDED, RetrainJobs
    from musiclust.service import Service

    root, dataset, jobs_dir = own_env
    service = Service(dataset, root)
    before = service.version("conv_vae")
    others = {n: service.version(n) for n in service.models() if n != "conv_vae"}
    at = open_app()
    at.selectbox(key="model_choice").set_value("conv_vae").run()
    assert before in " ".join(texts(at, "caption")), "the sidebar names the version in use"
    start_from_sidebar(at, ["conv_vae"], 1)
    no_exception(at)
    jobs = RetrainJobs(jobs_dir, REPO)
    assert jobs.status().state in ("running", "succeeded")
    assert any("Retraining" in (p.proto.text or "") for p in at.get("progress")) or jobs.status().state == SUCCEEDED
    status = wait_until(lambda: (s := jobs.status()).state != "running" and s, 400, "the retrain to finish")
    assert status.state == SUCCEEDED, f"{status.state}: {status.message}\n{jobs.log_path.read_text()[-2000:]}"
    at.run()
    no_exception(at)
    after = service.version("conv_vae")
    assert after != before, "the new checkpoint was switched in"
    assert {n: service.version(n) for n in others} == others, "models not retrained keep their version"
    assert any("finished" in s for s in texts(at, "success")), "the outcome is shown"
    at.switch_page("pages/latent_map.py").run()
    no_exception(at)
    assert after in " ".join(texts(at, "caption")), "the sidebar shows the new version in use"


def test_second_retrain_is_refused_and_cancel_keeps_the_model(own_env):
    from musiclust.serving.jobs import RetrainJobs
    from musiclust.service import Service

    root, dataset, jobs_dir = own_env
    service = Service(dataset, root)
    before = {n: service.version(n) for n in service.models()}
    first, second = open_app(), open_app()  # two browser sessions
    start_from_sidebar(first, ["basic_vae", "conv_vae"], 200)
    jobs = RetrainJobs(jobs_dir, REPO)
    wait_until(jobs.is_running, 30, "the retrain to start")
    start_from_sidebar(second, ["conv_vae"], 1)
    no_exception(second)
    assert any("already running" in w for w in texts(second, "warning")), texts(second, "warning")

    wait_until(lambda: jobs.status().model, 200, "training to begin")
    first.run()
    assert first.get("progress"), "the running job shows a progress bar"
    assert "epoch" in first.get("progress")[0].proto.text
    reloaded = open_app()  # a page reload is a new session: the progress comes from the status on disk
    assert reloaded.get("progress"), "a reload during the retrain shows its progress"
    first.button(key="cancel_retrain").click().run()
    status = wait_until(lambda: (s := jobs.status()).state != "running" and s, 120, "the cancel to take effect")
    assert status.state == "cancelled", status.message
    first.run()
    no_exception(first)
    assert any("cancelled" in w for w in texts(first, "warning")), "the reason is shown"
    assert {n: service.version(n) for n in service.models()} == before, "the previous models stay"


def test_last_upload_is_reconstructed_with_a_named_label(app_env, real_clip_paths):
    at = open_app()
    upload(at, real_clip_paths[3])
    at.switch_page("pages/reconstructions.py").run()
    no_exception(at)
    at.button_group(key="recon_source").set_value("Your last upload").run()
    no_exception(at)
    infos = " ".join(texts(at, "info"))
    assert "majority group of cluster" in infos and "your upload" in infos, infos
    assert any("MSE" in str(c) for c in at.dataframe[0].value.columns)


# --- helpers that do not need a running app -------------------------------------------------------
def test_map_figure_is_one_trace_per_colour_and_fast_at_10000_points():
    import numpy as np
    import pandas as pd

    from musiclust.serving import figures as ui

    n, rng = 10_000, np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": [f"t{i}" for i in range(n)], "title": [f"<b>title {i}</b>" for i in range(n)], "artist": "someone",
        "group": rng.choice(["a", "b", "c", "d", "e", "f"], n), "cluster": rng.integers(0, 8, n),
        "x": rng.normal(size=n), "y": rng.normal(size=n), "path": "/music/x.wav",
    })
    for column in ("title", "artist", "group"):
        frame[f"{column}_html"] = frame[column].map(__import__("html").escape)
    for colour_by, traces in (("cluster", 8), ("group", 6)):
        fig = ui.map_figure(frame, colour_by, marker_size=ui.marker_size(n))
        fig.to_json()
        assert len(fig.data) == traces and all(t.type == "scattergl" for t in fig.data)
        assert sum(len(t.x) for t in fig.data) == n
    ids = {str(row[0]) for t in fig.data for row in t.customdata}
    assert ids == set(frame["id"]), "every point carries its track id"
    assert "<b>" not in fig.data[0].customdata[0][1], "titles are escaped in hover text"


def test_playlists_are_m3u_and_csv_with_absolute_paths(tmp_path):
    import pandas as pd

    from musiclust_app import text as ui

    rows = pd.DataFrame({"id": ["a", "b"], "title": ["One", "Two\nlines"], "artist": ["X", ""], "group": ["g", "h"],
                         "cluster": [0, 1], "path": [str(tmp_path / "a.wav"), "relative/b.flac"]})
    m3u = ui.m3u_playlist(rows).splitlines()
    assert m3u[0] == "#EXTM3U"
    assert m3u[1] == "#EXTINF:-1,X - One" and m3u[2] == str(tmp_path / "a.wav")
    assert m3u[3] == "#EXTINF:-1,Two lines" and Path(m3u[4]).is_absolute()
    table = ui.csv_playlist(rows).splitlines()
    assert table[0] == "id,title,artist,group,cluster,path" and len(table) >= 3


def test_a_typed_folder_without_models_says_what_to_run(app_env, tmp_path, real_clip_paths):
    folder = tmp_path / "my music"
    folder.mkdir()
    shutil.copy(real_clip_paths[0], folder / "song.wav")
    at = open_app()
    at.selectbox(key="dataset_choice").set_value("__other__").run()
    at.text_input(key="dataset_path").input(str(tmp_path / "nowhere")).run()
    no_exception(at)
    assert any("No folder or .csv file" in e for e in texts(at, "error"))
    at.text_input(key="dataset_path").input(str(folder)).run()
    no_exception(at)
    said = " ".join(texts(at, "info"))
    assert "python -m musiclust train" in said and "--data" in said
    assert at.button(key="empty_state_train"), "a button starts the retrain instead"


# --- the sidebar's libraries, roots, group source, k and outcomes (issue 12) ----------------------
def edit_manifests(folder: Path, **fields) -> None:
    """Add ``fields`` to every model's manifest under a data set's checkpoint folder (a private copy):
    what ``train`` records (``data``, ``k_choice``) that the session fixture's direct saves leave out."""
    import json

    for manifest in sorted(folder.glob("*/manifest.json")):
        meta = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**meta, **fields}))


def test_sidebar_lists_libraries_with_models_and_starts_on_the_last_one(own_env, monkeypatch):
    from musiclust.data.known import last_library
    from musiclust.service import dataset_slug

    root, dataset, jobs_dir = own_env
    edit_manifests(root / dataset_slug(dataset), data=dataset)
    monkeypatch.delenv("MUSICLUST_DATA")
    at = open_app()
    no_exception(at)
    choice = at.sidebar.selectbox(key="dataset_choice")
    assert f"{dataset} · 5 models" in choice.options, "a library with models is listed without typing its path"
    assert last_library(jobs_dir) is None, "nothing is written at start-up"
    choice.set_value(dataset).run()
    no_exception(at)
    assert last_library(jobs_dir).data == dataset
    again = open_app()  # a new session (a reload, or tomorrow) starts on the library chosen last
    assert again.sidebar.selectbox(key="dataset_choice").value == dataset
    assert again.sidebar.selectbox(key="model_choice").options


@pytest.mark.parametrize("typed", ["/etc", "{inside}/../../../../../../etc", "{inside}/link-out"])
def test_a_path_outside_the_library_roots_is_refused(app_env, tmp_path_factory, typed):
    inside = tmp_path_factory.mktemp("inside-a-root")
    link = inside / "link-out"
    if not link.exists():
        link.symlink_to("/etc", target_is_directory=True)  # a link from inside a root to outside it
    at = open_app()
    before = at.sidebar.selectbox(key="model_choice").options
    at.selectbox(key="dataset_choice").set_value("__other__").run()
    at.text_input(key="dataset_path").input(typed.format(inside=inside)).run()
    no_exception(at)
    errors = " ".join(texts(at, "error"))
    assert "outside the library roots" in errors and "MUSICLUST\\_LIBRARY\\_ROOTS" in errors, errors
    assert "passwd" not in " ".join(texts(at, "markdown") + texts(at, "caption")), "nothing of the folder is shown"
    assert at.sidebar.selectbox(key="model_choice").options == before, "the data set in use is unchanged"


def test_a_new_data_set_does_not_inherit_the_retrain_model(app_env, tmp_path, real_clip_paths):
    from musiclust.service import model_catalogue

    folder = tmp_path / "new library"
    folder.mkdir()
    shutil.copy(real_clip_paths[0], folder / "song.wav")
    at = open_app()
    in_use = at.selectbox(key="model_choice").value
    assert at.multiselect(key="retrain_models").value == [in_use]
    at.selectbox(key="dataset_choice").set_value("__other__").run()
    at.text_input(key="dataset_path").input(str(folder)).run()
    no_exception(at)
    assert at.multiselect(key="retrain_models").value == [m.name for m in model_catalogue() if not m.opt_in], \
        "every default model, not the last one (nor an opt-in one)"
    assert at.multiselect(key="retrain_models").options == [m.name for m in model_catalogue()], "every model is offered"
    assert at.selectbox(key="library_groups").value == "auto"


def test_group_source_and_k_go_to_the_train_command(own_env):
    from musiclust.serving.jobs import RetrainJobs

    root, dataset, jobs_dir = own_env
    at = open_app()
    at.selectbox(key="library_groups").set_value("none").run()
    at.number_input(key="retrain_k").set_value(3).run()
    start_from_sidebar(at, ["basic_vae"], 1)
    no_exception(at)
    jobs = RetrainJobs(jobs_dir, REPO)
    args = jobs.status().args  # written before the child starts
    try:
        assert args[args.index("--groups") + 1] == "none" and args[args.index("--k") + 1] == "3", args
        assert args[args.index("--data") + 1] == dataset
    finally:
        jobs.cancel()
        wait_until(lambda: not jobs.is_running(), 120, "the retrain to stop")


def test_retrain_outcome_names_what_trained_for_its_own_data_set_and_can_be_dismissed(own_env, tmp_path):
    from musiclust.serving.jobs import SUCCEEDED, JobStatus, RetrainJobs, write_status

    root, dataset, jobs_dir = own_env
    why = "skipped: beta_cvae is conditioned on the group, so every track needs one"
    elsewhere = str(tmp_path / "another library")
    status_path = RetrainJobs(jobs_dir, REPO).status_path
    # what a finished `train --status-file` run leaves (musiclust.serving.jobs.StatusReporter.finish)
    write_status(status_path, JobStatus(SUCCEEDED, "job-1", finished_at=time.time(), args=["--data", elsewhere],
                                        message="4 of 5 trained", trained=["a", "b", "c", "d"], not_trained={"beta_cvae": why}))
    at = open_app()
    no_exception(at)
    assert not texts(at, "success"), "another data set's outcome is not shown here"
    write_status(status_path, JobStatus(SUCCEEDED, "job-2", finished_at=time.time(), args=["--data", dataset],
                                        message="4 of 5 trained", trained=["a", "b", "c", "d"], not_trained={"beta_cvae": why}))
    at.run()
    shown = " ".join(texts(at, "success"))
    assert "4 of 5 trained; beta\\_cvae skipped: beta\\_cvae is conditioned" in shown, shown
    at.button(key="dismiss_outcome").click().run()
    no_exception(at)
    assert not texts(at, "success"), "dismissed"
    write_status(status_path, JobStatus("failed", "job-3", finished_at=time.time(), args=["--data", dataset],
                                        message="failed: no track could be read; the previous models are still in use"))
    at.run()
    assert any("Last retrain failed: no track could be read" in e for e in texts(at, "error"))


def test_metrics_page_shows_the_k_sweep_and_label_free_scores_without_groups(own_env):
    from musiclust.analysis.ksweep import choose_k
    from musiclust.serving import checkpoint as ckpt
    from musiclust.service import Service, dataset_slug

    root, dataset, _ = own_env
    service = Service(dataset, root)
    sweep = choose_k(service.bundle("conv_vae").space, k_range=(2, 6), criterion="silhouette")
    best = sweep.k_
    # the record training writes for a collection without groups (musiclust.pipeline._choose_k)
    edit_manifests(root / dataset_slug(dataset), k_choice={"k": best, "source": "sweep", "space": "conv_vae latent",
                                                           "sweep": sweep.to_dict()})
    rows = [{"model": name, "seed": 0, "silhouette": 0.3, "calinski_harabasz": 10.0, "davies_bouldin": 1.0,
             "ari": float("nan"), "nmi": float("nan"), "purity": float("nan")} for name in ("random", "conv_vae")]
    ckpt.save_report(service.root, "evaluation", {"seeds": 1, "rows": rows})
    at = open_app("pages/metrics.py")
    at.selectbox(key="model_choice").set_value("conv_vae").run()
    no_exception(at)
    said = " ".join(texts(at, "markdown"))
    assert f"k = {best}" in said and "sweep over k" in said and "silhouette" in said
    assert "label-free scores** only" in said
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    assert any("k_sweep" in key for key in charts), "the sweep's curve is drawn"
    table = at.dataframe[0].value
    assert not any(c.startswith(("ARI", "NMI", "Purity")) for c in table.columns), table.columns
