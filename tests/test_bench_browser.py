"""Benchmark figures in headless Chromium, tiny mode: app start beside a one-line app, the map drawn,
and the answer to an upload beside the server's own time. Functional only: no time is asserted."""

from __future__ import annotations

import json

import pytest
from bench_support import bench, has_goal, positive

pytestmark = pytest.mark.browser


def test_app_map_and_answer_figures(tmp_path, trained_checkpoints, real_music_folder):
    out = tmp_path / "bench.json"
    proc = bench("--quick", "--figures", "app,map,answer", "--data", str(real_music_folder), "--checkpoints", str(trained_checkpoints),
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
    assert len(an["later_runs"]) == 2 and an["later_s"]["n"] == 2  # each visit's next upload, on the same page
    # the page before each visit's first upload (its clusters chart drawn) is timed apart from the answer
    assert an["page_s"]["n"] == 2 and all(positive(r["page_s"]) for r in an["runs"])
    for r in an["runs"] + an["later_runs"]:  # the complete answer: at least the neighbours' players, every one loaded or failed visibly
        assert r["players"] >= 1 and r["charts"] >= 1 and r["players_failed"] == 0
        assert r["players_ready"] + r["players_metadata_only"] + r["players_on_demand"] == r["players"]
        parts = r["parts_s"]  # each part complete no later than the whole answer (a chart redrawn in place: from 0)
        assert set(parts) == {"alert", "charts", "players", "idle", "all"} and parts["all"] > 0
        assert all(0 <= v <= parts["all"] for v in parts.values()) and parts["alert"] > 0
    assert positive(an["first_upload_s"]) and positive(an["first_upload_picked_s"]) and positive(an["ratios"]["browser_vs_server_p50"])
    has_goal(an, "p95")
    has_goal(an, "later_p95")
