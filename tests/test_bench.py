"""The benchmark runs end to end in its tiny mode: featurization, scaling, training, upload and the map's
server side, each beside its same-run reference (figures 7-9 and the projection: test_bench_projection.py;
the browser figures: test_bench_browser.py and test_bench_fresh.py; one file each, so they run side by side).

Functional only: nothing here asserts a time (the numbers of a --quick run on real 8 s clips mean little).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from bench_support import FORMATS, MODELS, WAV_FORMATS, bench, has_goal, no_errors, positive, run_quick

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
FIGURES = ("featurization", "scaling", "training", "upload", "map")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, real_music_folder):
    """One --quick run without the browser: real clips, the real folder as data set (trains its own models)."""
    return run_quick(tmp_path_factory, "--no-browser", "--figures", ",".join(FIGURES), "--clips", str(real_music_folder),
                     "--data", str(real_music_folder))


def test_every_figure_is_there_without_errors(quick):
    no_errors(quick[0], FIGURES)


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


def test_map_server_side_and_browser_skipped_on_request(quick):
    results, _, _ = quick
    m = results["figures"]["map"]
    sizes = [row["n"] for row in m["server"]]
    assert sizes[0] == m["reference_points"] and 1000 in sizes
    for row in m["server"][1:]:
        assert positive(row["server_total_s"]) and positive(row["payload_mb"]) and positive(row["server_vs_reference"])
    assert "skipped" in m["browser"]


def test_table_and_files(quick):
    results, stdout, out = quick
    for title in ("1 Featurization", "2 Upload", "3 Training", "5 Map size", "6 Scaling"):
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
