"""Upload -> complete answer in a real browser: the answer, the map, and the neighbours' players loading their audio.
(The first page beside a one-line app is the benchmark's app figure, run by tests/test_bench_browser.py.)

``streamlit run app.py`` on the tiny trained models, driven by Playwright through Debian's Chromium. Each upload
is made on a fresh page in a fresh browser context (no cached audio). The seconds until the complete answer are
printed for people (the benchmark measures them); no verdict here depends on time or load.
Run with ``pytest -m browser``; skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from test_browser import (  # noqa: F401  (fixtures: the app on the tiny trained models, Chromium)
    assert_no_exception, browser, open_page, server, shot,
)

pytestmark = pytest.mark.browser

UPLOADER = "[data-testid='stFileUploaderDropzoneInput']"
PLAYERS = "[data-testid='stAudio']"
UPLOADS = int(os.environ.get("MUSICLUST_TEST_UPLOADS", "1"))  # more, to print a p50/p95 by hand

# The complete answer: a new success alert, every chart drawn, the app idle, every player loaded (as bench/answer.py).
ANSWER_SHOWN = """([before]) => {
  if (document.querySelectorAll("[data-testid='stAlertContentSuccess']").length <= before) return false;
  const idle = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']";
  if (!document.querySelector(idle) || document.querySelector("[data-stale='true']")) return false;
  const charts = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")];  // the map, the group mix, the mel
  if (charts.length < 2 || !charts.every(c => c.querySelector(".vega-embed canvas, .vega-embed svg.marks"))) return false;
  const players = [...document.querySelectorAll("audio[data-testid='stAudio'], [data-testid='stAudio'] audio")];
  if (players.length < 5) return false;
  return players.every(a => a.error || a.readyState >= 2 || (a.readyState >= 1 && a.networkState !== 2));
}"""
PLAYER_STATES = """() => [...document.querySelectorAll("audio[data-testid='stAudio'], [data-testid='stAudio'] audio")]
  .map(a => ({src: a.currentSrc || a.src, readyState: a.readyState, error: a.error ? a.error.code : null}))"""


def upload_once(browser, url: str, clip, screenshot: str = "") -> dict:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = context.new_page()
        open_page(page, url)
        assert_no_exception(page)
        before = page.locator("[data-testid='stAlertContentSuccess']").count()
        started = time.perf_counter()
        page.locator(UPLOADER).set_input_files(str(clip))
        page.wait_for_function(ANSWER_SHOWN, arg=[before], timeout=120_000, polling="raf")
        seconds = time.perf_counter() - started
        assert_no_exception(page)
        success = page.locator("[data-testid='stAlertContentSuccess']", has_text="lands in cluster")
        assert clip.name in success.inner_text()
        players = page.evaluate(PLAYER_STATES)
        replies = [page.request.get(p["src"]) for p in players[:5]]
        if screenshot:
            shot(page, screenshot)
        return {"seconds": seconds, "players": players, "replies": [(r.status, len(r.body())) for r in replies]}
    finally:
        context.close()


def test_upload_answers_with_playable_neighbours(server, browser, real_clip_paths):
    upload_once(browser, server, real_clip_paths[0])  # the model loads here (cold)
    runs = [upload_once(browser, server, real_clip_paths[i % len(real_clip_paths)], screenshot="5-upload-answer" if i == 0 else "")
            for i in range(UPLOADS)]
    for run in runs:
        players = run["players"]
        assert len(players) >= 5, "the five neighbours"
        assert all(p["error"] is None and p["readyState"] >= 1 for p in players), players
        assert all(p["src"] and not p["src"].startswith("data:") for p in players), "audio is fetched, not inlined"
        assert all(status == 200 and size > 1000 for status, size in run["replies"]), run["replies"]
    seconds = sorted(r["seconds"] for r in runs)
    p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
    print(f"\nupload -> complete answer (browser), {len(seconds)} warm uploads: p50 {statistics.median(seconds):.2f} s, "
          f"p95 {p95:.2f} s, all {[round(s, 2) for s in seconds]}; load {os.getloadavg()[0]:.1f}")
    print("player bytes:", [size for _, size in runs[0]["replies"]])
