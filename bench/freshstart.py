"""Figure 11: a fresh machine — from a clean checkout (Python packages installed, nothing built) to the app's
first page, and to the first model being usable, beside a one-line Streamlit app started the same way.

The checkout is a copy of this repository's files as git would check them out (tracked and untracked but
not ignored: no rendered default set, no feature cache, no checkpoints, no job state), run from the copy
with ``MUSICLUST_DEFAULT_AUDIO``, ``MUSICLUST_DEFAULT_MANIFEST``, ``MUSICLUST_CHECKPOINTS`` and
``MUSICLUST_JOBS`` pointing into it (``musiclust/paths.py``). ``--quick`` renders a small manifest (4 rows
of each of 4 groups, cut to 8 s) instead of the 490 clips, trains one epoch (``MUSICLUST_FIRST_RUN_EPOCHS``)
and stops watching once the first model is usable (every model trained is timed only in the full run).

Which first run is measured depends on what the checkout does:

* **background** — the app starts the build itself on its first page
  (:func:`musiclust.serving.firstrun.ensure_first_build`): ``streamlit run app.py`` at t = 0, the first page
  rendered in Chromium, then the first checkpoint saved, then the app's page offering the upload (its file
  uploader), then every model;
* **serial** — what exists before that: ``scripts/run-app``'s steps after ``scripts/setup``
  (``python -m musiclust data``, ``python -m musiclust train --if-missing``, ``streamlit run app.py``), timed
  from the first step; the app serves, and its first model is usable, only at the end.

Chosen by watching: if within ``BUILD_START_WAIT_S`` of its first page the app has rendered no clip and
written no job status, it builds nothing, and the serial steps are timed instead. Whatever the build
started is stopped at the end (only processes running from the temporary checkout, by pid).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from bench.browser import chromium, page_errors, server, wait_rendered
from bench.common import REPO, Log, goal, python_env, ratio, summary

GOAL_FIRST_PAGE_S = 60.0
BUILD_START_WAIT_S = 20.0
QUICK_GROUPS, QUICK_PER_GROUP, QUICK_SECONDS = ("bach_chorale", "german_folk", "fiddle_tune", "monteverdi"), 4, 8.0
UPLOADER = "[data-testid='stFileUploaderDropzoneInput']"
REFERENCE_APP = 'import streamlit as st\n\nst.title("Reference")\n'


def clean_checkout(dest: Path) -> Path:
    """This repository's files as a fresh clone has them (``git ls-files``: tracked + untracked, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape").split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def small_manifest(source: Path, dest: Path) -> int:
    """The first rows of a few quick-to-render groups, cut to ``QUICK_SECONDS``: rows written."""
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    kept = []
    for group in QUICK_GROUPS:
        for row in [r for r in rows if r["group"] == group][:QUICK_PER_GROUP]:
            kept.append({**row, "duration_s": str(min(QUICK_SECONDS, float(row["duration_s"])))})
    with open(dest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return len(kept)


class Checkout:
    """The fresh checkout, its environment and what its build has made so far (read from disk alone)."""

    def __init__(self, root: Path, manifest_rows: Optional[int]):
        self.root = root
        self.audio = root / "data" / "default"
        self.checkpoints = root / "checkpoints"
        self.jobs = root / "data" / "jobs"
        self.manifest = root / "data" / "manifest.csv"
        self.rows = manifest_rows
        self.env = {"MUSICLUST_DEFAULT_AUDIO": str(self.audio), "MUSICLUST_DEFAULT_MANIFEST": str(self.manifest),
                    "MUSICLUST_CHECKPOINTS": str(self.checkpoints), "MUSICLUST_JOBS": str(self.jobs)}

    def clips(self) -> int:
        folder = self.audio / "natural"
        return sum(1 for p in folder.glob("*.wav")) if folder.is_dir() else 0

    def models(self) -> list[str]:
        from musiclust.serving import checkpoint as ckpt

        root = self.checkpoints / "default"
        return ckpt.available(root) if root.is_dir() else []

    def job_started(self) -> bool:
        return self.jobs.is_dir() and any(self.jobs.iterdir())

    def build_failure(self) -> Optional[str]:
        """The background build's message if it failed (its status file, as the app's sidebar reads it)."""
        from musiclust.serving.jobs import FAILED, read_status

        status = self.jobs / "retrain.json"
        if not status.is_file():
            return None
        state = read_status(status)
        return (state.message or FAILED) if state.state == FAILED else None

    def stop_builds(self) -> list[int]:
        """Stop what still runs from this checkout (a background build outlives the server): by pid."""
        import psutil

        stopped = []
        for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
            try:
                cwd, cmd = proc.info["cwd"] or "", " ".join(proc.info["cmdline"] or [])
            except (psutil.Error, OSError):
                continue
            if proc.pid != os.getpid() and (cwd.startswith(str(self.root)) or str(self.root) in cmd):
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                    stopped.append(proc.pid)
                except OSError:
                    pass
        if stopped:
            psutil.wait_procs([p for p in psutil.process_iter() if p.pid in stopped], timeout=10)
        return stopped


def _first_page(browser, url: str, started: float, selector: str = "h1") -> float:
    page = browser.new_page()
    try:
        page.goto(url, wait_until="commit")
        wait_rendered(page, selector)
        return time.monotonic() - started
    finally:
        page.close()


def reference_start(browser, tmp: Path) -> float:
    """Seconds from ``streamlit run`` to the one-line app's page rendered."""
    script = tmp / "reference_app.py"
    script.write_text(REFERENCE_APP)
    with server(script) as s:
        s.wait_healthy()
        return _first_page(browser, s.url, s.started)


def _watch_background(co: Checkout, browser, s, first_page_s: float, timeout: float, log: Log, every_model: bool = True) -> dict:
    """After the first page: when the first checkpoint appears, the page offers the upload, and (``every_model``)
    every model is there."""
    from musiclust.models.registry import MODEL_NAMES  # what a first run trains

    out: dict = {"first_checkpoint_s": None, "first_model_page_s": None, "all_models_s": None, "progress": []}
    deadline = s.started + timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - s.started
        models = co.models()
        if not out["progress"] or out["progress"][-1][1:] != [co.clips(), len(models)]:
            out["progress"].append([round(now, 1), co.clips(), len(models)])
        if models and out["first_checkpoint_s"] is None:
            out["first_checkpoint_s"] = now
            log(f"fresh: first checkpoint ({models[0]}) after {now:.0f} s")
            page = browser.new_page()
            try:
                page.goto(s.url, wait_until="commit")
                wait_rendered(page, UPLOADER, timeout_ms=int(max(1.0, deadline - time.monotonic()) * 1000))
                out["first_model_page_s"] = time.monotonic() - s.started
                out["exceptions_on_page"] = page_errors(page)
            except Exception as exc:  # noqa: BLE001 - the page may offer the model otherwise: noted, not fatal
                out["first_model_page_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            finally:
                page.close()
        if len(models) >= len(MODEL_NAMES):
            out["all_models_s"] = time.monotonic() - s.started
            break
        if not every_model and out["first_checkpoint_s"] is not None:
            break
        if failure := co.build_failure():  # nothing more will come: say why instead of waiting for the timeout
            raise RuntimeError(f"the first run's build failed: {failure}")
        time.sleep(0.5)
    out["models"] = co.models()
    out["clips"] = co.clips()
    return out


def _run_step(args: list[str], co: Checkout, log: Log, timeout: float) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "musiclust", *args], cwd=co.root, env=python_env(single_thread=False, extra={**co.env, "PYTHONPATH": str(co.root)}),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"`python -m musiclust {' '.join(args)}` failed ({proc.returncode}): {proc.stderr[-1500:]}")
    log(f"fresh: `musiclust {' '.join(args)}` took {time.monotonic() - started:.0f} s")
    return time.monotonic() - started


def _serial(co: Checkout, browser, timeout: float, log: Log) -> dict:
    """scripts/run-app's steps after setup, timed from the first one."""
    started = time.monotonic()
    data_s = _run_step(["data"], co, log, timeout)
    train_s = _run_step(["train", "--if-missing"], co, log, timeout)
    with server(co.root / "app.py", co.env, root=co.root) as s:
        s.wait_healthy()
        app_s = _first_page(browser, s.url, s.started, UPLOADER)
    total = time.monotonic() - started
    return {"data_s": data_s, "train_s": train_s, "app_start_s": app_s, "first_page_s": total, "first_model_page_s": total,
            "models": co.models(), "clips": co.clips()}


def run(log: Log, quick: bool, timeout: float = 1800.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-fresh-") as tmp_name:
        tmp = Path(tmp_name)
        co = Checkout(clean_checkout(tmp / "checkout"), None)
        if quick:
            from musiclust.serving.firstrun import EPOCHS_ENV

            co.rows = small_manifest(REPO / "data" / "manifest.csv", co.manifest)
            co.env[EPOCHS_ENV] = "1"  # as every --quick figure trains: one epoch
        else:
            with open(co.manifest, encoding="utf-8") as handle:
                co.rows = sum(1 for _ in handle) - 1
        log(f"fresh: clean checkout in {co.root} ({co.rows} manifest rows); one-line app first")
        try:
            with chromium() as browser:
                ref = [reference_start(browser, tmp)]
                with server(co.root / "app.py", co.env, root=co.root) as s:
                    health = s.wait_healthy()
                    first_page = _first_page(browser, s.url, s.started)
                    log(f"fresh: first page after {first_page:.1f} s; watching for a background build")
                    while time.monotonic() - s.started < first_page + BUILD_START_WAIT_S and not (co.clips() or co.job_started()):
                        time.sleep(0.5)
                    background = bool(co.clips() or co.job_started())
                    if background:
                        out = {"mode": "background", "health_s": health, "first_page_s": first_page,
                               **_watch_background(co, browser, s, first_page, timeout, log, every_model=not quick)}
                if not background:
                    log("fresh: the app started no build: timing scripts/run-app's steps instead")
                    out = {"mode": "serial", "app_without_data_first_page_s": first_page, "health_without_data_s": health,
                           **_serial(co, browser, timeout, log)}
                ref.append(reference_start(browser, tmp))
        finally:
            out_stopped = co.stop_builds()
    reference = summary(ref)
    usable = out.get("first_model_page_s") or out.get("first_checkpoint_s")
    return {
        **out,
        "manifest_rows": co.rows,
        "quick": quick,
        "reference_first_page_s": reference,
        "stopped_build_pids": out_stopped,
        "ratios": {"first_page_vs_reference": ratio(out["first_page_s"], reference["p50"]),
                   "first_model_vs_reference": ratio(usable, reference["p50"])},
        "goals": {"first_page": goal(f"first page <= {GOAL_FIRST_PAGE_S:.0f} s after the packages are installed ({out['first_page_s']:.1f} s, {out['mode']})",
                                     out["first_page_s"] <= GOAL_FIRST_PAGE_S)},
    }


def table_rows(fig: dict, met) -> list[list[str]]:
    ref = fig["reference_first_page_s"]["p50"]
    what = f"{fig['manifest_rows']} clips{' (quick: 8 s each)' if fig['quick'] else ''}, {fig['mode']} build"
    usable = fig.get("first_model_page_s") or fig.get("first_checkpoint_s")
    rows = [["11 Fresh machine", f"clean checkout → first page rendered (s); {what}", f"{fig['first_page_s']:.1f}",
             f"one-line app {ref:.2f} s", f"{fig['ratios']['first_page_vs_reference']:.1f}×", met(fig["goals"]["first_page"])]]
    rows.append(["11 Fresh machine", "clean checkout → first model usable (page offers the upload) (s)",
                 f"{usable:.1f}" if usable else "not reached", f"one-line app {ref:.2f} s",
                 f"{fig['ratios']['first_model_vs_reference']:.0f}×" if fig["ratios"]["first_model_vs_reference"] else "–", ""])
    if fig["mode"] == "serial":
        rows.append(["11 Fresh machine", "serial steps: render · train · app start (s)",
                     f"{fig['data_s']:.1f} · {fig['train_s']:.1f} · {fig['app_start_s']:.1f}", "", "", ""])
    elif fig.get("all_models_s"):
        rows.append(["11 Fresh machine", "clean checkout → every model trained (s)", f"{fig['all_models_s']:.1f}", "", "", ""])
    return rows
