"""The widened Service (the app's one door) on real trained models, and the layout rule that keeps it the
one door: the pages and ``app.py`` import only ``musiclust_app`` and ``musiclust.service``; the core never
imports Streamlit; the benchmark never imports the app."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from musiclust.analysis.reconstruction import reconstruction_mse_db
from musiclust.errors import ParameterError
from musiclust.models.registry import DISPLAY_ORDER, SPECS
from musiclust.service import Service, model_catalogue

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(trained_checkpoints, real_music_folder) -> Service:
    return Service(str(real_music_folder), trained_checkpoints)


def conditioned(service: Service) -> str:
    return next(n for n in service.models() if SPECS[n].conditioned_on_label)


def test_catalogue_is_the_registry_in_display_order():
    catalogue = model_catalogue()
    assert [m.name for m in catalogue] == list(DISPLAY_ORDER)
    assert all(m.blurb == SPECS[m.name].blurb and m.conditioned_on_label == SPECS[m.name].conditioned_on_label for m in catalogue)


def test_reconstruction_report_of_a_collection_track(service):
    names = service.models()
    track = service.track_table(names[0]).iloc[0]
    report = service.reconstruction_report(names, track_id=track["id"])
    assert [r.model for r in report.rows] == names and not report.skipped
    np.testing.assert_array_equal(report.original_db, service.collection_mel(names[0], track["id"]))
    for row in report.rows:
        assert row.mse_db == reconstruction_mse_db(report.original_db, row.mel_db) and row.mse_db > 0
        if SPECS[row.model].conditioned_on_label:
            assert (row.label.source, row.label.name) == ("group", track["group"]), "its own group"
        else:
            assert row.label is None
    assert all(r.mel_db.shape[0] == report.original_db.shape[0] for r in report.rows)


def test_an_upload_is_decoded_with_the_majority_group_of_the_cluster_it_lands_in(service, real_clip_paths):
    name = conditioned(service)
    answer = service.analyse(name, real_clip_paths[5].read_bytes())
    label = service.decoder_label(name, mel_db=answer.features.mel_db)
    frame = service.track_table(name)
    members = frame[frame["cluster"] == answer.placement.cluster]["group"]
    assert (label.source, label.cluster) == ("placed", answer.placement.cluster)
    counts = members.value_counts()
    assert counts[label.name] == counts.max(), "a majority group of that cluster"
    report = service.reconstruction_report([name], mel_db=answer.features.mel_db)
    assert report.rows[0].label == label
    with pytest.raises(ParameterError):
        service.reconstruction_report([name], track_id=frame["id"].iloc[0], mel_db=answer.features.mel_db)


def test_a_model_that_cannot_load_is_named_in_the_report(service):
    names = service.models()
    track_id = service.track_table(names[0])["id"].iloc[0]
    report = service.reconstruction_report([names[0], "no_such_model"], track_id=track_id)
    assert [r.model for r in report.rows] == [names[0]] and "no_such_model" in report.skipped


def test_morph_walks_segment_by_segment_with_track_a_label(service):
    name = conditioned(service)
    frame = service.track_table(name)
    a, b = frame["id"].iloc[0], frame["id"].iloc[-1]
    walk = service.morph(name, a, b, steps=3)
    info = service.model(name)
    assert walk.mel_db.shape == (info.feature_config.n_mels, 3 * info.feature_config.segment_frames)
    assert walk.label == service.decoder_label(name, track_id=a)
    assert walk.segment_seconds == pytest.approx(info.feature_config.segment_frames * info.feature_config.hop_length
                                                 / info.feature_config.sample_rate)


def test_cluster_card_names_its_most_typical_member(service):
    name = service.models()[0]
    frame = service.track_table(name)
    card = service.cluster_card(name, 0)
    assert card.size == int((frame["cluster"] == 0).sum())
    assert card.typical.id in set(frame.loc[frame["cluster"] == 0, "id"])


def test_a_cluster_of_a_library_without_groups_has_no_group_mix():
    """Every member of a library without groups is counted "unknown": the card then has no mix to draw
    (a single bar said nothing), while a cluster with some known groups keeps its unknown members."""
    from types import SimpleNamespace

    from musiclust.serving.answers import cluster_card

    # the cards as a checkpoint holds them (pipeline.cluster_cards), without a typical track to look up
    bundle = SimpleNamespace(meta={"clusters": [
        {"size": 4, "with_lyrics": 0, "groups": {"unknown": 4}, "top_terms": []},
        {"size": 3, "with_lyrics": 0, "groups": {"fiddle_tune": 2, "unknown": 1}, "top_terms": []}]})
    assert cluster_card(bundle, 0).groups == {}
    assert cluster_card(bundle, 1).groups == {"fiddle_tune": 2, "unknown": 1}


def test_metrics_table_flags_the_conditioned_model(trained_checkpoints, real_music_folder, tmp_path):
    import shutil

    from musiclust.serving import checkpoint as ckpt

    root = tmp_path / "checkpoints"
    shutil.copytree(trained_checkpoints, root, symlinks=True)
    service = Service(str(real_music_folder), root)
    rows = [{"model": n, "seed": s, "nmi": 0.5 + 0.1 * s, "heldout_nmi": 0.4 + 0.2 * s,
             "conditioned_on_label": SPECS[n].conditioned_on_label}
            for n in service.models() for s in (0, 1)] + [{"model": "random", "seed": s, "nmi": 0.0} for s in (0, 1)]
    ckpt.save_report(service.root, "evaluation", {"seeds": 2, "rows": rows})
    table = service.metrics_table()
    assert table.n_seeds == 2 and table.seeds == [0, 1] and table.metrics == ["nmi"]
    assert table.conditioned == [conditioned(service)]
    kinds = dict(zip(table.summary["model"], table.summary["kind"]))
    assert kinds["random"] == "baseline" and kinds[conditioned(service)] == "conditioned"
    assert table.cell(0, "nmi") == "0.550 ± 0.050"
    assert table.not_scored == {}
    # the held-out pieces' scores, averaged over the seeds like the others (the page shows them as columns)
    assert table.heldout == ["heldout_nmi"] and table.cell(0, "heldout_nmi") == "0.500 ± 0.100"


def test_metrics_table_leaves_out_baselines_that_scored_nothing_and_says_why(trained_checkpoints, real_music_folder, tmp_path):
    """On a library without lyrics the lyrics baselines score nothing (rows as evaluation writes them):
    they are named with their reason instead of drawn as rows of dashes."""
    import shutil

    from musiclust.serving import checkpoint as ckpt

    root = tmp_path / "checkpoints"
    shutil.copytree(trained_checkpoints, root, symlinks=True)
    service = Service(str(real_music_folder), root)
    note = "too few tracks with lyrics for the lyrics join: the same as mfcc_kmeans"
    rows = [{"model": "mfcc_kmeans", "seed": 0, "nmi": 0.4, "conditioned_on_label": False},
            {"model": "tfidf_kmeans", "seed": 0, "n_tracks": 0, "conditioned_on_label": False},
            {"model": "mfcc_lyrics_kmeans", "seed": 0, "note": note, "conditioned_on_label": False},
            {"model": "conv_vae", "seed": 0, "nmi": 0.5, "conditioned_on_label": False}]
    ckpt.save_report(service.root, "evaluation", {"seeds": 1, "rows": rows})
    table = service.metrics_table()
    assert table.summary["model"].tolist() == ["mfcc_kmeans", "conv_vae"]
    assert table.not_scored == {"tfidf_kmeans": "no track has lyrics", "mfcc_lyrics_kmeans": note}


# --- the layout rule -----------------------------------------------------------------------------
def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_the_pages_go_through_the_app_package_and_the_service_only():
    for path in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]:
        project = {m for m in imported_modules(path) if m.split(".")[0] in ("musiclust", "musiclust_app", "app_support")}
        assert project <= {"musiclust_app", "musiclust.service"}, f"{path.name} imports {sorted(project)}"
        assert not {"torch", "librosa", "soundfile", "os", "pathlib"} & imported_modules(path), path.name


def test_the_core_never_imports_streamlit_and_the_benchmark_never_imports_the_app():
    for path in (REPO / "musiclust").rglob("*.py"):
        assert not {m for m in imported_modules(path) if m.split(".")[0] in ("streamlit", "musiclust_app")}, path
    for path in (REPO / "bench").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "musiclust_app" not in text and "app_support" not in text, path
