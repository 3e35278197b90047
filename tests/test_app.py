"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page renders on real trained models,
an upload is placed, a corrupt upload changes nothing, a retrain switches the model in, and a second
retrain while one runs is refused.

The app reads ``MUSICLUST_CHECKPOINTS`` / ``MUSICLUST_DATA`` / ``MUSICLUST_JOBS``; here they point at the
``trained_checkpoints`` fixture (every model trained briefly on real rendered clips) and a temporary job folder.
"""

from __future__ import annotations

import shutil
import json
import time
from pathlib import Path

import pytest
from apptest_support import PAGES, no_exception, open_app, start_from_sidebar, texts, upload
from support import tree_digest, wait_until

REPO = Path(__file__).resolve().parents[1]


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
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]  # the map, the group mix, the mel
    layers = [layer for spec in specs for layer in spec.get("layer", [])]
    star = next(layer["data"]["values"][0] for layer in layers if "label" in str(layer.get("data", "")))
    assert (star["x"], star["y"]) == pytest.approx(expected.coords, abs=1e-5), "the star is where the service placed it"
    assert any(str(layer.get("data", "")).count("data:image/png;base64,") == 1 for layer in layers), "the upload's mel"
    print(f"upload answered in {elapsed:.2f} s (AppTest run, model already loaded)")

    monkeypatch.setattr(Service, "analyse", lambda *a, **k: (_ for _ in ()).throw(AssertionError("analysed again")))
    at.run()  # a rerun answers from the session cache, without analysing the file again
    no_exception(at)
    assert any("lands in cluster" in s for s in texts(at, "success"))


def test_the_upload_page_loads_the_model_while_it_waits_for_a_file(app_env):
    from musiclust_app.state import get_service

    root, dataset = app_env
    get_service.clear()  # a new Service: nothing loaded yet
    at = open_app()
    no_exception(at)
    name = at.session_state["model_choice"]
    service = get_service(dataset, str(root))
    assert not at.file_uploader[0].value, "no file given"
    wait_until(lambda: service.is_loaded(name), 120, f"{name} loaded in the background")


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
    # a small collection's map is SVG (no WebGL context to wait for); from the threshold on, WebGL
    small = ui.map_figure(frame.iloc[:ui.MAP_SVG_MAX_POINTS - 1], "cluster")
    assert {t.type for t in small.data} == {"scatter"} and sum(len(t.x) for t in small.data) == ui.MAP_SVG_MAX_POINTS - 1
    at_threshold = ui.map_figure(frame.iloc[:ui.MAP_SVG_MAX_POINTS], "cluster")
    assert {t.type for t in at_threshold.data} == {"scattergl"}


def test_spectrograms_floor_is_drawn_black():
    """Plotly in the browser draws Magma's first stop, #000004, pink: a spectrogram's quietest bands and the
    foot of its colour bar came out pink (seen in headless Chromium). The app writes it #000000."""
    import numpy as np
    from plotly.colors import sequential

    from musiclust.config import FeatureConfig
    from musiclust_app import figures

    fig = figures.mel_figure(np.random.default_rng(0).normal(-30, 10, (128, 64)), FeatureConfig())
    stops = [colour for _, colour in fig.data[0].colorscale]
    assert stops[0] == "#000000" and stops[1:] == list(sequential.Magma[1:])


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

