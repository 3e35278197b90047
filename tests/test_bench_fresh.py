"""Benchmark figure 11 in headless Chromium, tiny mode: a clean checkout's first page and first usable
model, beside a one-line app's first page. Functional only: no time is asserted."""

from __future__ import annotations

import json

import pytest
from bench_support import bench, has_goal, positive

pytestmark = pytest.mark.browser


def test_fresh_checkout_figure(tmp_path, real_music_folder):
    out = tmp_path / "bench.json"  # (--clips: what the other figures would read; given, so nothing else is rendered)
    proc = bench("--quick", "--figures", "fresh", "--clips", str(real_music_folder), "--out", str(out), timeout=3000)
    assert proc.returncode == 0, proc.stderr[-4000:]
    fr = json.loads(out.read_text())["figures"]["fresh"]
    assert "error" not in fr, fr.get("traceback")
    assert fr["mode"] in ("background", "serial") and fr["manifest_rows"] == 16 and fr["quick"]
    assert positive(fr["first_page_s"]) and positive(fr["reference_first_page_s"]["p50"]) and fr["reference_first_page_s"]["n"] == 2
    assert fr["models"] and fr["clips"] == 16  # it really built: every clip rendered, models trained in the checkout
    assert positive(fr["first_model_page_s"] or fr["first_checkpoint_s"]) and positive(fr["ratios"]["first_page_vs_reference"])
    has_goal(fr, "first_page")
