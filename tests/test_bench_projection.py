"""Benchmark figures 7-9 (Dask featurization, the index at scale, training from the sharded store) and
the 1M-track projection from their per-track costs, in the tiny mode, on the session's trained models."""

from __future__ import annotations

import pytest
from bench_support import FORMATS, MODELS, WAV_FORMATS, bench, has_goal, no_errors, positive, run_quick

FIGURES = ("dask", "index", "stream")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, real_music_folder, trained_checkpoints):
    return run_quick(tmp_path_factory, "--no-browser", "--figures", ",".join(FIGURES), "--clips", str(real_music_folder),
                     "--data", str(real_music_folder), "--checkpoints", str(trained_checkpoints))


def test_every_figure_is_there_without_errors(quick):
    no_errors(quick[0], FIGURES)


def test_dask_figure_runs_both_cluster_sizes_into_fresh_stores(quick):
    d = quick[0]["figures"]["dask"]
    assert d["sizes"] == [8, 16]
    assert {(r["n"], r["workers"]) for r in d["rows"]} == {(8, 1), (8, 2), (16, 1), (16, 2)}
    for r in d["rows"] + d["malloc_variant"]:
        assert r["featurized"] == r["n"] and r["failed"] == 0 and r["lost_partitions"] == 0  # fresh store: all done
        assert sum(r["tracks_per_worker"]) == r["n"] and len(r["tracks_per_worker"]) == r["workers"]
        assert positive(r["tracks_per_s"]) and positive(r["startup_s"]) and positive(r["worker_peak_rss_mb"])
        assert positive(r["store_mb_per_track"]) and positive(r["worker_cpu_ms_per_track"])
    assert [r["nanny_malloc_trim"] for r in d["malloc_variant"]] == [False, False]
    assert positive(d["ratios"]["speedup_2_vs_1_workers"]["16"]) and positive(d["reference"]["serial_ms_per_track_nanny_malloc_env"])
    has_goal(d, "speedup")
    has_goal(d, "flat")


def test_index_figure_times_both_clustering_paths_and_the_upload_against_a_big_index(quick):
    ix = quick[0]["figures"]["index"]
    assert ix["n_big"] == 5000 and "trained mvae_poe" in ix["latents"] and "map" in ix["skipped_steps"]
    for n in (ix["n_small"], ix["n_big"]):
        assert ix["steps"][f"kmeans_{n}"]["path"] == "kmeans" and ix["steps"][f"minibatch_{n}"]["path"] == "minibatch_kmeans"
        assert positive(ix["steps"][f"kmeans_{n}"]["seconds"]) and positive(ix["steps"][f"kmeans_{n}"]["peak_rss_mb"])
    up = ix["upload"]
    assert up["tracks"] == {"small": ix["n_small"], "big": 5000} and up["runs"] == 2
    assert up["analyse_big_s"]["p95"] >= up["analyse_big_s"]["p50"] > 0 and positive(up["place_small_s"]["p50"])
    assert len(set(up["neighbours_big"])) == 5  # five distinct tracks of the tiled index
    has_goal(ix, "p95")


def test_stream_figure_trains_from_replicated_stores_and_the_projection_uses_the_figures(quick):
    results = quick[0]
    st = results["figures"]["stream"]
    assert st["sizes"] == [200, 400]
    for r in st["rows"]:
        assert r["tracks"] == r["n"] and r["skipped"] == 0 and 1 <= r["batches"] <= 3
        assert r["train_tracks"] + r["val_tracks"] == r["n"] and positive(r["peak_rss_mb"])
    p = results["projection"]
    assert p["tracks"] == 1_000_000 and p["workers"] == 20
    for key in ("featurize_wall_h_ideal", "memory_per_worker_mb", "store_gb", "cluster_s", "upload_p50_ms", "train_peak_mb"):
        assert positive(p[key]["value"]) and p[key]["arithmetic"]


def test_table_names_the_figures_and_the_projection(quick):
    _, stdout, _ = quick
    for title in ("7 Dask", "8 Index", "9 Stream training", "Projection 1,000,000 tracks"):
        assert title in stdout
