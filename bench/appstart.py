"""Figure 4: app start — from ``streamlit run app.py`` to the health endpoint answering, and to the first
page rendered in headless Chromium (the upload page, its model loaded from the checkpoints).

Chromium is started beforehand (its own start is not the app's). Reference, measured the same way in
the same run and interleaved with ours (the order alternating start by start): a one-line Streamlit app
(``st.title``), i.e. what Streamlit itself costs on this machine at this moment. Goal: the first page
within 1.3x the one-line app's (p50 over p50), i.e. the app adds at most 30 % to Streamlit's own start.

"Rendered" is the page's first heading and the app idle with nothing stale (``bench.browser.wait_rendered``),
not any text of the page, so the figure stands while the pages are rewritten.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.browser import app_env, chromium, page_errors, server, wait_rendered
from bench.common import REPO, Log, goal, ratio, summary

GOAL_FIRST_PAGE_RATIO = 1.3
REFERENCE_APP = 'import streamlit as st\n\nst.title("Reference")\n'


def _start_once(browser, script: Path, env: dict, expected: str) -> dict:
    with server(script, env) as s:
        health = s.wait_healthy()
        page = browser.new_page()
        try:
            page.goto(s.url, wait_until="commit")
            wait_rendered(page, expected)
            first_page = time.monotonic() - s.started
            errors = page_errors(page)
            title = page.locator("h1").first.inner_text(timeout=5000) if page.locator("h1").count() else ""
        finally:
            page.close()
    return {"health_s": health, "first_page_s": first_page, "exceptions": errors, "title": title}


def run(data: str, checkpoints: Path, reps: int, log: Log) -> dict:
    ours, ref = [], []
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-app-") as tmp, chromium() as browser:
        ref_script = Path(tmp) / "reference_app.py"
        ref_script.write_text(REFERENCE_APP)
        env = app_env(data, checkpoints, Path(tmp) / "jobs")
        for i in range(reps):
            log(f"app start: round {i + 1}/{reps}")
            pair = [(ref, ref_script, {}), (ours, REPO / "app.py", env)]
            for runs, script, script_env in (pair if i % 2 == 0 else pair[::-1]):
                runs.append(_start_once(browser, script, script_env, "h1"))
    first = summary([r["first_page_s"] for r in ours])
    health = summary([r["health_s"] for r in ours])
    ref_first = summary([r["first_page_s"] for r in ref])
    ref_health = summary([r["health_s"] for r in ref])
    worst = max(r["first_page_s"] for r in ours)
    first_vs_ref = ratio(first["p50"], ref_first["p50"])
    return {
        "reps": reps,
        "health_s": health,
        "first_page_s": first,
        "reference_health_s": ref_health,
        "reference_first_page_s": ref_first,
        "runs": {"ours": ours, "reference": ref},
        "page_title": ours[-1]["title"] if ours else "",
        "exceptions_on_page": int(np.sum([r["exceptions"] for r in ours])),
        "ratios": {
            "health_vs_reference": ratio(health["p50"], ref_health["p50"]),
            "first_page_vs_reference": first_vs_ref,
        },
        "goals": {"first_page": goal(f"first page <= {GOAL_FIRST_PAGE_RATIO}x the one-line app's with trained models "
                                     f"(p50 {first['p50']:.2f} s vs {ref_first['p50']:.2f} s = {first_vs_ref or float('nan'):.2f}x; worst {worst:.2f} s)",
                                     first_vs_ref is not None and first_vs_ref <= GOAL_FIRST_PAGE_RATIO)},
    }
