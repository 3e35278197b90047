"""The benchmark runs end to end in its tiny mode and writes every figure beside its same-run reference.

Functional only: nothing here asserts a time (the numbers of a --quick run on real 8 s clips mean little).
The browser figures (app start, map in Chromium, the answer in the browser, the fresh checkout) are checked in a
separate browser-marked test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("featurization", "scaling", "training", "upload", "app", "map", "dask", "index", "stream", "answer", "fresh")
FORMATS = ("wav_44k_stereo", "wav_22k_mono", "ogg", "mp3")
WAV_FORMATS = FORMATS[:2]
MODELS = {"basic_vae", "conv_vae", "conv_vae_fusion", "mvae_poe", "beta_cvae"}


def bench(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiclust", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def has_goal(fig: dict, key: str) -> None:
    g = fig["goals"][key]
    assert g["text"] and g["met"] in (True, False, None)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, real_music_folder):
    """One --quick run without the browser: real clips, the real folder as data set (trains its own models)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = bench("--quick", "--no-browser", "--clips", str(real_music_folder), "--data", str(real_music_folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout, out


def test_every_figure_is_there_without_errors(quick):
    results, _, _ = quick
    figs = results["figures"]
    assert set(FIGURES) <= set(figs)
    for name in FIGURES:
        assert "error" not in figs[name], figs[name].get("traceback")
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert results["settings"]["quick"] is True


def test_featurization_has_every_format_core_count_and_ratio(quick):
    f = quick[0]["figures"]["featurization"]
    assert f["floor_fft"] and set(f["floor_fft"]) <= {"numpy", "scipy"}
    for fmt in FORMATS:
        for cores in ("1", "2"):
            r = f["ratios"][fmt][cores]
            for key in ("ours_vs_floor", "ours_vs_librosa", "ours_vs_floor_cpu", "ours_vs_librosa_cpu"):
                assert positive(r[key]), (fmt, cores, key)
            impls = {row["impl"] for row in f["rows"] if row["format"] == fmt and row["cores"] == int(cores)}
            extra = {"ours_v1"} if fmt in WAV_FORMATS else set()  # features_version 1, timed on WAV only
            assert impls == {"ours", "floor", "librosa"} | extra, (fmt, cores)
    assert all(positive(row["clips_per_s"]) for row in f["rows"])
    for fmt in WAV_FORMATS:  # features_version 1 timed beside version 2 on WAV
        for cores in ("1", "2"):
            assert positive(f["ratios"][fmt][cores]["ours_v1_vs_floor"]) and positive(f["ratios"][fmt][cores]["ours_v1_vs_librosa_cpu"])
    fid = f["fidelity"]
    assert fid["clips"] == 3 and fid["v1"]["max_abs_db"] < fid["v2"]["max_abs_db"] < 1.0  # float32 moves more, and little
    assert fid["v2"]["max_abs_db_loud"] <= fid["v2"]["max_abs_db"]
    has_goal(f, "vs_floor_wav")
    has_goal(f, "vs_librosa_wav")


def test_upload_has_percentiles_references_stages_and_cold_start(quick):
    u = quick[0]["figures"]["upload"]
    assert set(u["wav_44k_stereo"]) == MODELS
    assert u["default_model"] == "mvae_poe" and set(u["mp3"]) == {"mvae_poe"}
    for m in list(u["wav_44k_stereo"].values()) + list(u["mp3"].values()):
        assert m["warm_s"]["n"] == 2 and m["warm_s"]["p95"] >= m["warm_s"]["p50"] > 0
        assert positive(m["reference_floor_s"]["p50"]) and positive(m["reference_librosa_s"]["p50"])
        assert positive(m["p50_vs_floor"]) and positive(m["p50_vs_librosa"])
        assert set(m["stages_s"]) == {"decode", "features", "encode", "place_rest"}
    c = u["cold_start"]
    assert positive(c["first_call_s"]) and positive(c["import_s"]) and positive(c["first_call_vs_warm_p50"])
    has_goal(u, "p95")


def test_training_reports_every_model_peak_memory_and_reference(quick):
    t = quick[0]["figures"]["training"]
    assert positive(t["wall_seconds"]) and positive(t["peak_rss_mb"]) and positive(t["peak_pss_mb"])
    assert set(t["models"]) == MODELS
    for m in t["models"].values():
        assert m["epochs_run"] == 1 and positive(m["seconds_per_epoch"]["p50"]) and positive(m["epoch_vs_reference_step"])
    assert positive(t["reference"]["torch_step_s_before"]) and positive(t["reference"]["torch_step_s_after"])
    assert positive(t["ratios"]["wall_vs_reference_step"])
    has_goal(t, "retrain")


def test_scaling_reports_sizes_workers_memory_and_ratios(quick):
    s = quick[0]["figures"]["scaling"]
    assert s["sizes"] == [3, 6]
    assert {(r["n"], r["jobs"]) for r in s["rows"]} == {(3, 1), (3, 2), (6, 1), (6, 2)}
    for r in s["rows"]:
        assert r["computed"] == r["n"] and r["cached"] == 0 and r["failed"] == 0  # distinct files: no cache hit
        assert positive(r["ms_per_clip"]) and positive(r["peak_rss_mb"]) and positive(r["peak_pss_mb"])
    assert positive(s["ratios"]["time_per_clip_largest_vs_smallest"]["1"])
    assert positive(s["ratios"]["speedup_2_vs_1_workers"]["6"])
    assert positive(s["reference"]["floor_ms_per_clip_before"])
    assert {"1", "2"} <= set(s["linear_fit"])
    has_goal(s, "flat")


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


def test_map_server_side_and_browser_skipped_on_request(quick):
    results, _, _ = quick
    m = results["figures"]["map"]
    sizes = [row["n"] for row in m["server"]]
    assert sizes[0] == m["reference_points"] and 1000 in sizes
    for row in m["server"][1:]:
        assert positive(row["server_total_s"]) and positive(row["payload_mb"]) and positive(row["server_vs_reference"])
    assert "skipped" in m["browser"]
    for name in ("app", "answer", "fresh"):
        assert "skipped" in results["figures"][name]
        assert len(results["figures"][name]["load_average"]) == 2


def test_table_and_files(quick):
    results, stdout, out = quick
    for title in ("1 Featurization", "2 Upload", "3 Training", "4 App start", "5 Map size", "6 Scaling", "7 Dask", "8 Index",
                  "9 Stream training", "10 Answer in the browser", "11 Fresh machine", "Projection 1,000,000 tracks"):
        assert title in stdout
    assert "Load average (1 min) at each figure's start → end: featurization" in stdout
    assert "reference (same run)" in stdout and "Machine:" in stdout
    assert out.with_suffix(".md").read_text().startswith("| figure |")


def test_bad_arguments_exit_2_with_one_line():
    proc = bench("--figures", "nonsense")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_bench_run_script_help():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.browser
def test_browser_figures(tmp_path, trained_checkpoints, real_music_folder):
    """App start, the map, the answer to an upload and a fresh checkout's first run, in headless Chromium (quick)."""
    from bench.browser import browser_problem

    if browser_problem():
        pytest.skip(browser_problem())
    out = tmp_path / "bench.json"
    proc = bench("--quick", "--figures", "app,map,answer,fresh", "--data", str(real_music_folder), "--checkpoints", str(trained_checkpoints),
                 "--clips", str(real_music_folder), "--out", str(out), timeout=3000)
    assert proc.returncode == 0, proc.stderr[-4000:]
    figs = json.loads(out.read_text())["figures"]
    a = figs["app"]
    assert "error" not in a and a["exceptions_on_page"] == 0
    assert a["page_title"]  # the first heading rendered (its words belong to the page, not to this test)
    for key in ("health_s", "first_page_s", "reference_health_s", "reference_first_page_s"):
        assert positive(a[key]["p50"])
    assert positive(a["ratios"]["health_vs_reference"]) and positive(a["ratios"]["first_page_vs_reference"])
    has_goal(a, "first_page")
    m = figs["map"]
    rows = m["browser"]["rows"]
    assert [r["n"] for r in rows] == [m["reference_points"], 1000]
    for r in rows:
        assert "error" not in r and r["exceptions"] == 0 and positive(r["page_to_drawn_s"]) and r["frames"] > 0
    assert positive(rows[1]["drawn_vs_reference"])
    has_goal(m, "smooth")
    an = figs["answer"]
    assert "error" not in an, an.get("traceback")
    assert an["uploads"] == 2 and an["browser_s"]["n"] == 2 and an["server_analyse_s"]["n"] == 4  # one analyse before, one after each
    assert an["exceptions_on_page"] == 0 and an["model"] == "mvae_poe"
    for r in an["runs"]:  # the complete answer: at least the neighbours' players, every one loaded or failed visibly
        assert r["players"] >= 1 and r["charts"] >= 1 and r["players_failed"] == 0
        assert r["players_ready"] + r["players_metadata_only"] + r["players_on_demand"] == r["players"]
    assert positive(an["first_upload_s"]) and positive(an["ratios"]["browser_vs_server_p50"])
    has_goal(an, "p95")
    fr = figs["fresh"]
    assert "error" not in fr, fr.get("traceback")
    assert fr["mode"] in ("background", "serial") and fr["manifest_rows"] == 16 and fr["quick"]
    assert positive(fr["first_page_s"]) and positive(fr["reference_first_page_s"]["p50"]) and fr["reference_first_page_s"]["n"] == 2
    assert fr["models"] and fr["clips"] == 16  # it really built: every clip rendered, models trained in the checkout
    assert positive(fr["first_model_page_s"] or fr["first_checkpoint_s"]) and positive(fr["ratios"]["first_page_vs_reference"])
    has_goal(fr, "first_page")
