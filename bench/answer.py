"""Figure 10: upload -> complete answer in the browser, beside the server-side analysis of the same upload.

What a person waits for: a real 30 s clip (OGG, 44.1 kHz stereo, as people have them) is put into the app's
file uploader in headless Chromium (``set_input_files`` on ``stFileUploaderDropzoneInput``), and the clock
runs until the complete answer is shown:

* a success alert (``stAlertContentSuccess``) that was not on the page before the upload;
* every Plotly chart drawn (``stPlotlyChart .js-plotly-plot .main-svg``), at least one;
* every audio player loaded, at least ``MIN_PLAYERS`` (the neighbours'): ``readyState >= 2`` (it can play),
  or metadata loaded and the browser done fetching what its ``preload`` asks for; a player that is
  ``preload="none"`` loads on demand (counted, not waited for) and a player in error counts as failed;
* the app idle with nothing stale.

Only test ids are used, never the page's text, which changes. Each upload happens on a freshly loaded page
in a fresh browser context (no answer of a previous upload on screen, no cached audio), with the server's
model warm: one untimed upload first (the cold one: model loading) is reported apart.

Reference, in the same run, interleaved: ``Service.analyse`` (what the page calls) on the same bytes in a
worker process, from a script thread as Streamlit calls it, once before and once after every browser
upload. The benchmark never imports the app; it drives it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.browser import IDLE, app_env, chromium, page_errors, server, wait_rendered
from bench.common import REPO, Log, Worker, goal, make_variants, ratio, summary

GOAL_P95_S = 1.0
MIN_PLAYERS = 1
UPLOADER = "[data-testid='stFileUploaderDropzoneInput']"
PLAYERS = "audio[data-testid='stAudio'], [data-testid='stAudio'] audio"
SUCCESS = "[data-testid='stAlertContentSuccess']"

ANSWER_SHOWN = """([before, minPlayers, idle]) => {
  const successes = document.querySelectorAll("[data-testid='stAlertContentSuccess']").length;
  if (successes <= before) return false;
  if (!document.querySelector(idle) || document.querySelector("[data-stale='true']")) return false;
  const charts = [...document.querySelectorAll("[data-testid='stPlotlyChart']")];
  if (!charts.length || !charts.every(c => c.querySelector(".js-plotly-plot .main-svg"))) return false;
  const players = [...document.querySelectorAll("audio[data-testid='stAudio'], [data-testid='stAudio'] audio")];
  if (players.length < minPlayers) return false;
  return players.every(a => a.preload === "none" || a.error || a.readyState >= 2 || (a.readyState >= 1 && a.networkState !== 2));
}"""

PLAYER_STATES = """() => [...document.querySelectorAll("audio[data-testid='stAudio'], [data-testid='stAudio'] audio")].map(a => ({
  readyState: a.readyState, networkState: a.networkState, preload: a.preload, error: a.error ? a.error.code : null,
  bytes: a.src && a.src.startsWith("data:") ? a.src.length : null}))"""


def upload_once(browser, url: str, clip: Path, timeout_ms: int = 120_000) -> dict:
    """One upload on a fresh page in a fresh context: seconds until the complete answer is shown."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        wait_rendered(page, UPLOADER)
        before = page.locator(SUCCESS).count()
        started = time.monotonic()
        page.locator(UPLOADER).set_input_files(str(clip))
        page.wait_for_function(ANSWER_SHOWN, arg=[before, MIN_PLAYERS, IDLE], timeout=timeout_ms, polling="raf")
        seconds = time.monotonic() - started
        players = page.evaluate(PLAYER_STATES)
        charts = page.locator("[data-testid='stPlotlyChart']").count()
        return {
            "seconds": seconds,
            "players": len(players),
            "players_ready": sum(p["readyState"] >= 2 for p in players),
            "players_metadata_only": sum(p["readyState"] == 1 for p in players),
            "players_on_demand": sum(p["preload"] == "none" and p["readyState"] < 1 for p in players),
            "players_failed": sum(p["error"] is not None for p in players),
            "players_inline_data": sum(p["bytes"] is not None for p in players),
            "charts": charts,
            "exceptions": page_errors(page),
        }
    finally:
        context.close()


class AnalyseWorker:
    """A worker process that answers ``run`` with the seconds of one ``Service.analyse`` call (bench/worker.py)."""

    def __init__(self, clip: Path, data: str, checkpoints: Path, model: str):
        task = {"kind": "analyse_loop", "file": str(clip), "data": data, "checkpoints": str(checkpoints), "model": model,
                "script_thread": True}
        self.worker = Worker.start(task, single_thread=False)
        self.worker.wait_ready()
        self.worker.go()

    def once(self) -> float:
        self.worker.proc.stdin.write("run\n")
        self.worker.proc.stdin.flush()
        line = self.worker.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the analyse worker stopped: {self.worker.proc.stderr.read()[-2000:]}")
        return float(json.loads(line)["seconds"])

    def close(self) -> dict:
        self.worker.proc.stdin.write("end\n")
        self.worker.proc.stdin.flush()
        return self.worker.result()


def serve_analyses(task: dict, ready) -> dict:
    """Worker body (``kind: analyse_loop``): load the service and model, warm them, then time one
    ``Service.analyse(model, bytes)`` per ``run`` line until ``end``."""
    import sys

    from musiclust.service import Service

    data = Path(task["file"]).read_bytes()
    service = Service(task["data"], Path(task["checkpoints"]))
    t = time.perf_counter()
    service.analyse(task["model"], data, None)
    cold = time.perf_counter() - t
    ready()
    calls = 0
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        service.analyse(task["model"], data, None)
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
        calls += 1
    return {"calls": calls, "cold_s": cold}


def run(clip: Path, data: str, checkpoints: Path, model: str, uploads: int, log: Log) -> dict:
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-answer-") as tmp:
        ogg = make_variants([clip], Path(tmp))["ogg"][0]
        env = app_env(data, checkpoints, Path(tmp) / "jobs")
        log(f"answer: {uploads} uploads of {clip.stem} (as OGG) through the page, model {model}; Service.analyse interleaved")
        reference = AnalyseWorker(ogg, data, checkpoints, model)
        server_s, browser_runs, cold = [], [], None
        try:
            with chromium() as browser, server(REPO / "app.py", env) as s:
                s.wait_healthy()
                cold = upload_once(browser, s.url, ogg)  # the model loads here: reported apart
                for i in range(uploads):
                    server_s.append(reference.once())
                    browser_runs.append(upload_once(browser, s.url, ogg))
                    server_s.append(reference.once())
                    log(f"answer: upload {i + 1}/{uploads}: {browser_runs[-1]['seconds']:.2f} s in the browser")
        finally:
            worker_report = reference.close()
    import soundfile

    seconds = soundfile.info(str(clip)).duration
    shown = summary([r["seconds"] for r in browser_runs])
    analysed = summary(server_s)
    p95 = shown.get("p95", float("nan"))
    return {
        "clip": clip.stem,
        "format": f"OGG Vorbis 44.1 kHz stereo, {seconds:.0f} s",
        "model": model,
        "uploads": uploads,
        "browser_s": shown,
        "server_analyse_s": analysed,
        "first_upload_s": cold["seconds"] if cold else None,
        "server_cold_s": worker_report.get("cold_s"),
        "runs": browser_runs,
        "players": browser_runs[-1]["players"] if browser_runs else 0,
        "exceptions_on_page": int(sum(r["exceptions"] for r in browser_runs)),
        "ratios": {"browser_vs_server_p50": ratio(shown.get("p50"), analysed.get("p50")),
                   "browser_vs_server_p95": ratio(p95, analysed.get("p95"))},
        "goals": {"p95": goal(f"complete answer in the browser <= {GOAL_P95_S:.0f} s p95 ({p95:.2f} s)", p95 <= GOAL_P95_S)},
    }


def table_rows(fig: dict, met) -> list[list[str]]:
    b, sv = fig["browser_s"], fig["server_analyse_s"]
    last = fig["runs"][-1] if fig["runs"] else {}
    players = (f"{last.get('players', 0)} players: {last.get('players_ready', 0)} ready, {last.get('players_metadata_only', 0)} metadata only, "
               f"{last.get('players_on_demand', 0)} on demand, {last.get('players_inline_data', 0)} inline")
    return [
        ["10 Answer in the browser", f"upload ({fig['format'].split(', ')[-1]} OGG, {fig['model']}) → complete answer shown: p50 / p95 (s), {fig['uploads']} uploads; {players}",
         f"{b['p50']:.2f} / {b['p95']:.2f}", f"Service.analyse {sv['p50'] * 1000:.0f} / {sv['p95'] * 1000:.0f} ms",
         f"{fig['ratios']['browser_vs_server_p50']:.0f}× · {fig['ratios']['browser_vs_server_p95']:.0f}×", met(fig["goals"]["p95"])],
        ["10 Answer in the browser", "first upload after the server started (model loading) (s)", f"{fig['first_upload_s']:.2f}",
         f"analyse in a fresh worker {fig['server_cold_s']:.2f} s", "", ""],
    ]
