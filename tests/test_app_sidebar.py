"""The app's sidebar through ``AppTest``, on real trained models: the libraries it lists and starts on,
library roots (a path outside them is refused, and nothing of it is shown), a new data set not
inheriting the retrain model, the group source and k reaching the train command, a retrain's outcome
naming what trained, and the metrics page without groups (the k sweep and label-free scores).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from apptest_support import no_exception, open_app, start_from_sidebar, texts
from support import wait_until

REPO = Path(__file__).resolve().parents[1]


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


def test_latent_map_of_a_library_without_groups_colours_by_cluster_only(own_env):
    """Every track "unknown": colouring by group would draw one colour, so only clusters are offered;
    the same library with its groups offers both."""
    import json

    import streamlit as st

    from musiclust.service import dataset_slug

    root, dataset, _ = own_env

    def options(at) -> list:
        return [[o.content for o in e.proto.options] for e in at.get("button_group") if e.proto.label == "Colour by"][0]

    at = open_app("pages/latent_map.py")
    no_exception(at)
    assert options(at) == ["cluster", "group"]
    for manifest in sorted((root / dataset_slug(dataset)).glob("*/manifest.json")):  # as `train --groups none` writes
        meta = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**meta, "tracks": [{**t, "group": None} for t in meta["tracks"]]}))
    st.cache_data.clear()  # the same checkpoint versions, edited in place: the cached track tables are stale
    st.cache_resource.clear()
    at = open_app("pages/latent_map.py")
    no_exception(at)
    assert options(at) == ["cluster"]

