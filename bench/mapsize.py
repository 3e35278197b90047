"""Figure 5: the latent map for 1k, 10k and 100k points — building it, sending it, drawing it, panning it.

Points are the trained collection repeated with a little jitter (ids made unique). The figure is the one the
latent map page draws, built by the core's :func:`musiclust.serving.figures.map_figure` with its
:func:`~musiclust.serving.figures.marker_size` rule (the benchmark never imports the app), then what
``st.plotly_chart`` does with it on the server (Plotly validation + JSON) is timed and the JSON payload
measured. In the browser, a one-page Streamlit app draws that figure with ``st.plotly_chart(...,
on_select="rerun")`` as the page does (without the page's sidebar and playlist widgets); we time
``goto`` -> chart drawn and idle, then pan the map with the mouse (40 drag steps, each awaited: the time per
step is the redraw latency plus a fixed input round trip, hence the comparison with the reference) while
recording animation frames.
Reference, measured the same way in the same run: the collection itself (its real size).

Headless Chromium here has no GPU: WebGL runs in software (SwiftShader), so drawing is slower than on a
desktop with a GPU; the flag used is reported.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.common import REPO, Log, goal, ratio
from musiclust.serving.figures import map_figure, marker_size, with_hover_text

SMOOTH_EXTRA_STEP_MS = 33.0  # smooth: each pan step costs at most two 60 Hz frames more than on the reference map
SMOOTH_EXTRA_LOAD_S = 1.0  # and the map is drawn at most this much later than the collection-size reference
PLOT = "[data-testid='stPlotlyChart'] .js-plotly-plot"

MAP_APP = '''
import json, os, sys, time
sys.path.insert(0, {repo!r})
import streamlit as st
from bench.mapsize import collection_frame, jittered_frame
from musiclust.serving.figures import map_figure, marker_size

n = int(st.query_params.get("n", "0"))
frame = st.cache_resource(collection_frame)(os.environ["BENCH_MAP_DATA"], os.environ["BENCH_MAP_CHECKPOINTS"], os.environ["BENCH_MAP_MODEL"])
shown = jittered_frame(frame, n) if n else frame
t0 = time.perf_counter()
fig = map_figure(shown, "cluster", marker_size=marker_size(len(shown)), height=600)
t1 = time.perf_counter()
st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key=f"map_{{n}}")
t2 = time.perf_counter()
st.caption(f"bench map {{len(shown)}} points")
with open(os.environ["BENCH_MAP_LOG"], "a") as handle:
    handle.write(json.dumps({{"n": len(shown), "figure_s": t1 - t0, "plotly_chart_s": t2 - t1}}) + "\\n")
'''


def jittered_frame(frame, n: int, seed: int = 0):
    """``n`` rows: the collection repeated, copies moved by ~1 % of the map's extent, ids made unique."""
    import pandas as pd

    from bench.replicas import copies_needed, copy_number, tiled_ids

    big = pd.concat([frame] * copies_needed(n, len(frame)), ignore_index=True).iloc[:n].copy()
    copy_no = copy_number(n, len(frame))
    rng = np.random.default_rng(seed)
    for axis in ("x", "y"):
        span = float(np.ptp(frame[axis].to_numpy())) or 1.0
        big[axis] = big[axis].to_numpy() + (copy_no > 0) * rng.normal(0.0, 0.01 * span, n)
    big["id"] = tiled_ids(list(frame["id"]), n)
    return big.reset_index(drop=True)


def collection_frame(data: str, checkpoints: Path, model: str):
    """The map page's table for ``model``: the service's track table with the figure's hover text."""
    from musiclust.service import Service

    return with_hover_text(Service(data, Path(checkpoints).resolve()).track_table(model))


def server_side(frame, sizes: Sequence[int], repeats: int) -> list[dict]:
    """Build the figure as the page does, then what st.plotly_chart does with it: validate + JSON."""
    import plotly
    import plotly.io

    rows = []
    for n in sizes:
        shown = jittered_frame(frame, n) if n != len(frame) else frame
        build, validate, to_json, size = [], [], [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            fig = map_figure(shown, "cluster", marker_size=marker_size(len(shown)), height=600)
            t1 = time.perf_counter()
            plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
            t2 = time.perf_counter()
            spec = plotly.io.to_json(fig, validate=False)
            t3 = time.perf_counter()
            build.append(t1 - t0)
            validate.append(t2 - t1)
            to_json.append(t3 - t2)
            size = len(spec.encode())
        rows.append({
            "n": len(shown),
            "figure_s": float(np.median(build)),
            "validate_s": float(np.median(validate)),
            "json_s": float(np.median(to_json)),
            "server_total_s": float(np.median(build) + np.median(validate) + np.median(to_json)),
            "payload_mb": size / 2**20,
            "traces": len(fig.data),
        })
    return rows


PAN_JS_START = """() => {
  window.__frames = []; window.__stop = false;
  const tick = (t) => { window.__frames.push(t); if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
PAN_JS_STOP = "() => { window.__stop = true; return window.__frames; }"
WEBGL_JS = "() => { const c = document.createElement('canvas'); return !!(c.getContext('webgl') || c.getContext('experimental-webgl')); }"


def _pan(page) -> dict:
    """Drag the map (pan mode) across 40 steps; frame intervals and time per drag step."""
    box = page.locator(f"{PLOT} .nsewdrag").first.bounding_box()
    if box is None:
        return {}
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.evaluate(PAN_JS_START)
    page.wait_for_timeout(200)
    t = time.perf_counter()
    page.mouse.down()
    steps = 40
    for i in range(1, steps + 1):
        page.mouse.move(cx + 150 * math.sin(i / steps * math.pi), cy + 60 * (i / steps))
    page.mouse.up()
    drag = time.perf_counter() - t
    page.wait_for_timeout(300)
    frames = np.diff(np.array(page.evaluate(PAN_JS_STOP), float))
    return {
        "drag_steps": steps,
        "ms_per_drag_step": 1000 * drag / steps,
        "frame_ms_p50": float(np.percentile(frames, 50)) if frames.size else None,
        "frame_ms_p95": float(np.percentile(frames, 95)) if frames.size else None,
        "frames": int(frames.size),
    }


def browser_side(data: str, checkpoints: Path, model: str, sizes: Sequence[int], n_reference: int, log: Log) -> dict:
    from bench.browser import chromium, page_errors, server, wait_rendered

    out = {"rows": [], "webgl": None, "extra_chromium_flags": []}
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-map-") as tmp:
        script = Path(tmp) / "bench_map_app.py"
        script.write_text(MAP_APP.format(repo=str(REPO)))
        log_path = Path(tmp) / "server.jsonl"
        env = {"BENCH_MAP_DATA": data, "BENCH_MAP_CHECKPOINTS": str(checkpoints), "BENCH_MAP_MODEL": model,
               "BENCH_MAP_LOG": str(log_path)}
        flags: tuple = ()
        with chromium() as b:
            page = b.new_page()
            webgl = page.evaluate(WEBGL_JS)
            page.close()
        if not webgl:
            flags = ("--enable-unsafe-swiftshader",)  # software WebGL: without it scattergl cannot draw headless
        out["extra_chromium_flags"] = list(flags)
        with chromium(flags) as browser, server(script, env) as s:
            s.wait_healthy()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            out["webgl"] = page.evaluate(WEBGL_JS)
            page.goto(s.url + "/?n=0", wait_until="commit")  # warm the server: model and table loaded once
            wait_rendered(page, PLOT)
            page.close()
            for n in [0, *sizes]:
                label = n or n_reference
                log(f"map: drawing {label:,} points in Chromium")
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                try:
                    t = time.perf_counter()
                    page.goto(f"{s.url}/?n={n}", wait_until="commit")
                    wait_rendered(page, PLOT, timeout_ms=300_000)
                    page.wait_for_function(
                        "(sel) => { const g = document.querySelector(sel); return g && g._fullData && g._fullLayout; }", arg=PLOT, timeout=300_000
                    )
                    drawn = time.perf_counter() - t
                    pan = _pan(page)
                    row = {"n": label, "reference": n == 0, "page_to_drawn_s": drawn, "exceptions": page_errors(page), **pan}
                except Exception as exc:  # noqa: BLE001 - a size that cannot be drawn is a result, not a crash
                    row = {"n": label, "reference": n == 0, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                finally:
                    page.close()
                out["rows"].append(row)
        served = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        for row in out["rows"]:
            runs = [r for r in served if r["n"] == row["n"]]
            if runs:
                row["server_figure_s"] = runs[-1]["figure_s"]
                row["server_plotly_chart_s"] = runs[-1]["plotly_chart_s"]
    return out


def run(data: str, checkpoints: Path, model: str, sizes: Sequence[int], repeats: int, log: Log, browser: bool = True) -> dict:
    frame = collection_frame(data, checkpoints, model)
    n0 = len(frame)
    log(f"map: server side for {n0:,} (reference) and {', '.join(f'{n:,}' for n in sizes)} points")
    server = server_side(frame, [n0, *sizes], repeats)
    ref = server[0]
    for row in server[1:]:
        row["server_vs_reference"] = ratio(row["server_total_s"], ref["server_total_s"])
        row["server_us_per_point"] = 1e6 * row["server_total_s"] / row["n"]
    result = {"model": model, "reference_points": n0, "server": server}
    if browser:
        from bench.browser import browser_problem

        problem = browser_problem()
        if problem:
            result["browser"] = {"skipped": problem}
        else:
            b = browser_side(data, checkpoints, model, sizes, n0, log)
            bref = next((r for r in b["rows"] if r.get("reference")), {})
            for row in b["rows"]:
                if "page_to_drawn_s" in row and "page_to_drawn_s" in bref:
                    row["drawn_vs_reference"] = ratio(row["page_to_drawn_s"], bref["page_to_drawn_s"])
                    row["drag_step_vs_reference"] = ratio(row.get("ms_per_drag_step"), bref.get("ms_per_drag_step"))
                    row["extra_ms_per_drag_step"] = (row.get("ms_per_drag_step") or 0.0) - (bref.get("ms_per_drag_step") or 0.0)
                row["smooth"] = bool(
                    "page_to_drawn_s" in row and "page_to_drawn_s" in bref
                    and row["page_to_drawn_s"] <= bref["page_to_drawn_s"] + SMOOTH_EXTRA_LOAD_S
                    and row["extra_ms_per_drag_step"] <= SMOOTH_EXTRA_STEP_MS
                )
            result["browser"] = b
            smooth = [r["n"] for r in b["rows"] if r.get("smooth")]
            rough = [r["n"] for r in b["rows"] if not r.get("smooth")]
            result["smooth_up_to"] = max(smooth) if smooth else None
            result["first_not_smooth"] = min(rough) if rough else None
    else:
        result["browser"] = {"skipped": "browser measurements not requested"}
    stop = result.get("first_not_smooth")
    result["goals"] = {
        "smooth": goal(
            f"note where the map stops being smooth (drawn <= {SMOOTH_EXTRA_LOAD_S:.0f} s after the reference, and a pan step <= "
            f"{SMOOTH_EXTRA_STEP_MS:.0f} ms slower than on it): "
            + (f"smooth up to {result.get('smooth_up_to') or 0:,} points, not at {stop:,}" if stop else "smooth at every size measured"),
            None,
        )
    }
    return result

