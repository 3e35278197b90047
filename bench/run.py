"""The benchmark: ``python -m musiclust bench [--quick] [--figures ...]`` (or ``python bench/run.py``).

Six figures, each beside a reference measured in the same run on the same machine:

1. featurization  clips/s, one core and two, vs the floor (soundfile + bare rFFT) and librosa's defaults
2. upload         server-side upload -> answer, p50/p95 warm and the first call after a cold start
3. training       a full retrain of every model: seconds per epoch and in total, peak memory
4. app            ``streamlit run app.py`` -> health endpoint, and -> first page rendered in Chromium
5. map            the latent map for 1k / 10k / 100k points: build, payload, draw, pan
6. scaling        featurizing 100 / 200 / 400 / 800 clips with 1 and 2 worker processes, peak memory
7. dask           featurize_to_store on a LocalCluster of 1 and 2 workers, 500 / 1,000 / 2,000 tracks
8. index          the index at 100k tracks: clustering, map, their peak memory, upload latency against it
9. stream         peak memory of training from the sharded store at 1k / 10k / 100k tracks
10. answer        upload -> complete answer shown in Chromium, p50/p95, beside Service.analyse of the same upload
11. fresh         clean checkout -> first page and -> first model usable, beside a one-line app's start

After figures 7-9, a projection on paper for 1M tracks on 20 workers from their per-track costs
(:mod:`bench.projection`).

Prints a table, writes JSON (default ``bench/results/bench-<time>.json`` and ``bench/results/latest.json``).
Not a test: nothing here asserts a time; goals are reported as met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

FIGURES = ("featurization", "scaling", "training", "upload", "app", "map", "dask", "index", "stream", "answer", "fresh")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny run (3 clips, 2 runs, 1 epoch): checks the benchmark works, figures mean little")
    p.add_argument("--figures", default="all", help=f"comma-separated subset of: {', '.join(FIGURES)} (default all)")
    p.add_argument("--clips", help="folder of real clips (default: the rendered default set, data/default/natural)")
    p.add_argument("--data", default="default", help="data set of the trained models and of the training figure (default: default)")
    p.add_argument("--checkpoints", help="checkpoints root for upload/app/map (default: the repository's when the models are there, "
                   "else the ones the training figure just trained)")
    p.add_argument("--out", help="JSON output path (default: bench/results/bench-<time>.json)")
    p.add_argument("--n-clips", type=int, help="clips for the featurization figure (default 20; quick 3)")
    p.add_argument("--rounds", type=int, help="passes over the featurization clips (default 2; quick 1)")
    p.add_argument("--runs", type=int, help="warm upload runs per model (default 50; quick 2)")
    p.add_argument("--sizes", help="scaling sizes (default 100,200,400,800; quick 3,6)")
    p.add_argument("--map-sizes", help="map sizes (default 1000,10000,100000; quick 1000)")
    p.add_argument("--epochs", type=int, help="training epochs (default: train's own default; quick 1)")
    p.add_argument("--app-reps", type=int, help="app starts per app (default 3; quick 1)")
    p.add_argument("--no-browser", action="store_true", help="skip everything that needs Chromium")
    p.add_argument("--dask-sizes", help="tracks for the Dask figure (default 500,1000,2000; quick 8,16)")
    p.add_argument("--index-tracks", type=int, help="tracks in the large index (default 100000; quick 5000)")
    p.add_argument("--stream-sizes", help="tracks for the streaming-training figure (default 1000,10000,100000; quick 200,400)")
    p.add_argument("--uploads", type=int, help="timed uploads through the page for the answer figure (default 10; quick 2)")
    p.add_argument("--fresh-timeout", type=float, help="seconds the fresh-machine figure waits for the build (default 1800)")


def _ints(text: Optional[str], default: list[int]) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else default


def settings(args) -> dict:
    q = args.quick
    figures = list(FIGURES) if args.figures == "all" else [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        from musiclust.errors import ParameterError

        raise ParameterError(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    return {
        "quick": q,
        "figures": figures,
        "n_clips": args.n_clips or (3 if q else 20),
        "rounds": args.rounds or (1 if q else 2),
        "runs": args.runs or (2 if q else 50),
        "sizes": _ints(args.sizes, [3, 6] if q else [100, 200, 400, 800]),
        "map_sizes": _ints(args.map_sizes, [1000] if q else [1000, 10000, 100000]),
        "epochs": args.epochs or (1 if q else None),
        "app_reps": args.app_reps or (1 if q else 3),
        "browser": not args.no_browser,
        "data": args.data,
        "dask_sizes": _ints(args.dask_sizes, [8, 16] if q else [500, 1000, 2000]),
        "dask_partition": 4 if q else 64,
        "index_tracks": args.index_tracks or (5000 if q else 100_000),
        "index_runs": max(2, args.runs or 2) if q else max(20, args.runs or 30),  # the issue asks p50/p95 over >= 20 calls
        "stream_sizes": _ints(args.stream_sizes, [200, 400] if q else [1000, 10_000, 100_000]),
        "stream_batches": 3 if q else 40,
        "uploads": args.uploads or (2 if q else 10),
        "fresh_timeout": args.fresh_timeout or 1800.0,
    }


def _clips(args, s: dict, log) -> list:
    from bench.common import DEFAULT_CLIPS, find_clips, render_some

    folder = Path(args.clips) if args.clips else DEFAULT_CLIPS
    clips = find_clips(folder)
    if not clips and not args.clips:
        log(f"no clips in {folder}: rendering a few from the manifest")
        clips = render_some(max(s["n_clips"], 8), log)
    if not clips:
        from musiclust.errors import DataError

        raise DataError(f"no audio clips in {folder}")
    return clips


def _models_in(root: Path, data: str) -> list[str]:
    from musiclust.serving import checkpoint as ckpt
    from musiclust.service import dataset_slug

    return ckpt.available(Path(root) / dataset_slug(data))


def run(args) -> dict:
    from bench import common

    log = common.log_to_stderr
    s = settings(args)
    started = time.time()
    results: dict = {
        "benchmark": "musiclust",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "settings": s,
        "machine": common.machine(),
        "figures": {},
    }
    figures = results["figures"]
    clips = _clips(args, s, log)
    full = common.full_length(clips, 29.5) or clips  # figure 1 wants 30 s clips; tiny sets take what there is
    trained_root: Optional[Path] = None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="musiclust-bench-ckpt-") as tmp_ckpt:

        def attempt(name: str, fn) -> None:
            if name not in s["figures"]:
                return
            log(f"--- {name} ---")
            t = time.perf_counter()
            load_before = os.getloadavg()[0]
            try:
                figures[name] = fn()
            except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
                figures[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
                log(f"{name} failed: {exc}")
            figures[name]["bench_seconds"] = time.perf_counter() - t
            figures[name]["load_average"] = [load_before, os.getloadavg()[0]]  # 1-min, at its start and end

        def featurization():
            from bench import featurization as f

            chosen = common.spread(full, s["n_clips"])
            return f.run(chosen, s["rounds"], log)

        def scaling():
            from bench import scaling as sc

            return sc.run(clips, s["sizes"], log)

        def training():
            nonlocal trained_root
            from bench import training as tr

            out = tr.run(s["data"], Path(tmp_ckpt), log, epochs=s["epochs"])
            trained_root = Path(tmp_ckpt)
            return out

        def checkpoints() -> tuple[Path, list[str], str]:
            if args.checkpoints:
                root = Path(args.checkpoints)
                return root, _models_in(root, s["data"]), "given"
            repo_root = common.REPO / "checkpoints"
            if _models_in(repo_root, s["data"]):
                return repo_root, _models_in(repo_root, s["data"]), "repository"
            if trained_root is not None and _models_in(trained_root, s["data"]):
                return trained_root, _models_in(trained_root, s["data"]), "trained by this run's training figure"
            raise RuntimeError(f"no trained models for {s['data']!r}: run `python -m musiclust train` or include the training figure")

        def upload():
            from bench import upload as up

            root, models, origin = checkpoints()
            clip = common.spread(full, 1)[0]
            out = up.run(clip, s["data"], root, models, s["runs"], log, lyrics=_lyrics_of(clip))
            out["checkpoints"] = origin
            return out

        def app():
            from bench import appstart
            from bench.browser import browser_problem

            problem = browser_problem() if s["browser"] else "browser measurements not requested (--no-browser)"
            if problem:
                return {"skipped": problem}
            root, _, origin = checkpoints()
            out = appstart.run(s["data"], root, s["app_reps"], log)
            out["checkpoints"] = origin
            return out

        def map_():
            from bench import mapsize
            from bench.upload import ordered_models

            root, models, origin = checkpoints()
            out = mapsize.run(s["data"], root, ordered_models(models)[0], s["map_sizes"], 1 if s["quick"] else 3, log, browser=s["browser"])
            out["checkpoints"] = origin
            return out

        def dask():
            from bench import dask_scaling

            return dask_scaling.run(full, s["dask_sizes"], log, partition_size=s["dask_partition"],
                                    reference_tracks=min(128, max(s["dask_sizes"])))

        def index():
            from bench import index_scale
            from bench.upload import ordered_models

            try:
                root, models, origin = checkpoints()
            except RuntimeError as exc:  # no trained model: the clustering and map are timed on a synthetic stand-in
                log(f"index: {exc}")
                root, models, origin = None, [], "none"
            clip = common.spread(full, 1)[0]
            model = ordered_models(models)[0] if models else None
            out = index_scale.run(s["index_tracks"], log, s["data"], root, model, clip, _lyrics_of(clip), s["index_runs"],
                                  steps=("kmeans", "minibatch") if s["quick"] else index_scale.STEPS)
            out["checkpoints"] = origin
            return out

        def stream():
            from bench import stream_training

            return stream_training.run(s["data"], s["stream_sizes"], log, max_batches=s["stream_batches"])

        def browser_skip() -> Optional[str]:
            from bench.browser import browser_problem

            return browser_problem() if s["browser"] else "browser measurements not requested (--no-browser)"

        def answer():
            from bench import answer as an
            from bench.upload import ordered_models

            if browser_skip():
                return {"skipped": browser_skip()}
            root, models, origin = checkpoints()
            out = an.run(common.spread(full, 1)[0], s["data"], root, ordered_models(models)[0], s["uploads"], log)
            out["checkpoints"] = origin
            return out

        def fresh():
            from bench import freshstart

            if browser_skip():
                return {"skipped": browser_skip()}
            return freshstart.run(log, s["quick"], s["fresh_timeout"])

        for name, fn in (("featurization", featurization), ("scaling", scaling), ("training", training),
                         ("upload", upload), ("app", app), ("map", map_), ("dask", dask), ("index", index), ("stream", stream),
                         ("answer", answer), ("fresh", fresh)):
            attempt(name, fn)
    from bench.projection import maybe_project

    results["projection"] = maybe_project(figures)
    results["seconds"] = time.time() - started
    results["machine"]["load_average_at_end"] = list(__import__("os").getloadavg())
    return results


def _lyrics_of(clip: Path) -> Optional[str]:
    """The clip's real lyrics from the manifest (or a same-named .txt), if it has any."""
    import csv

    from bench.common import REPO

    txt = clip.with_suffix(".txt")
    if txt.is_file():
        return txt.read_text(encoding="utf-8", errors="replace")
    try:
        with open(REPO / "data" / "manifest.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["id"] == clip.stem:
                    return row.get("lyrics") or None
    except OSError:
        pass
    return None


# --- the table ---------------------------------------------------------------------------------------
def _f(x, spec=".2f", unit="") -> str:
    if x is None:
        return "–"
    return f"{x:{spec}}{unit}"


def _met(g: Optional[dict]) -> str:
    if not g:
        return ""
    return {True: "met", False: "MISSED", None: "noted"}[g.get("met")]


def table_rows(results: dict) -> list[list[str]]:
    """Rows of (figure, measure, ours, reference in the same run, ratio, goal)."""
    rows: list[list[str]] = []
    figs = results["figures"]
    label = {"wav_44k_stereo": "WAV 44.1k stereo", "wav_22k_mono": "WAV 22k mono", "ogg": "OGG 44.1k stereo", "mp3": "MP3 44.1k stereo"}

    def broken(name: str, title: str) -> bool:
        fig = figs.get(name)
        if fig is None:
            return True
        if "error" in fig or "skipped" in fig:
            rows.append([title, "", fig.get("error") or f"skipped: {fig['skipped']}", "", "", ""])
            return True
        return False

    if not broken("featurization", "1 Featurization"):
        f = figs["featurization"]
        by = {(r["format"], r["cores"], r["impl"]): r for r in f["rows"]}
        g = f["goals"]
        for fmt in label:
            for cores in (1, 2):
                if (fmt, cores, "ours") not in by:
                    continue
                o, fl, li = by[(fmt, cores, "ours")], by[(fmt, cores, "floor")], by[(fmt, cores, "librosa")]
                r = f["ratios"][fmt][str(cores)]
                wav = fmt.startswith("wav")
                rows.append([
                    "1 Featurization", f"{label[fmt]}, {cores} core{'s' if cores > 1 else ''} (clips/s)",
                    _f(o["clips_per_s"], ".1f"), f"floor {_f(fl['clips_per_s'], '.1f')} · librosa {_f(li['clips_per_s'], '.1f')}",
                    f"{_f(r['ours_vs_floor'])}× · {_f(r['ours_vs_librosa'])}×",
                    (f"≥0.7× {'met' if r['ours_vs_floor'] >= 0.7 else 'MISSED'} · ≥1.5× {'met' if r['ours_vs_librosa'] >= 1.5 else 'MISSED'}") if wav else "",
                ])
                v1 = by.get((fmt, cores, "ours_v1"))
                if v1 is not None:
                    rows.append(["1 Featurization", f"{label[fmt]}, {cores} core{'s' if cores > 1 else ''}, features_version 1 (float64 FFT)",
                                 _f(v1["clips_per_s"], ".1f"), "the same references",
                                 f"{_f(r.get('ours_v1_vs_floor'))}× · {_f(r.get('ours_v1_vs_librosa'))}×", ""])
        fid = f.get("fidelity")
        if fid:
            rows.append(["1 Featurization", f"largest dB distance from librosa's melspectrogram → power_to_db, {fid['clips']} clips: v2 · v1 "
                         f"(in bands within {fid['loud_within_db']:.0f} dB of their frame: v2 · v1)",
                         f"{fid['v2']['max_abs_db']:.1e} · {fid['v1']['max_abs_db']:.1e} ({fid['v2']['max_abs_db_loud']:.1e} · {fid['v1']['max_abs_db_loud']:.1e})",
                         "", "", ""])
        rows.append(["1 Featurization", "goals on WAV", "", "", "", f"{_met(g['vs_floor_wav'])} / {_met(g['vs_librosa_wav'])}"])
    if not broken("upload", "2 Upload → answer"):
        u = figs["upload"]
        head = u["default_model"]
        for fmt_key, fmt_label in (("wav_44k_stereo", "WAV"), ("mp3", "MP3")):
            for name, m in u[fmt_key].items():
                rows.append([
                    "2 Upload → answer", f"{name}{' (app default)' if name == head else ''}, {fmt_label}: p50 / p95 (ms)",
                    f"{_f(m['warm_s']['p50'] * 1000, '.0f')} / {_f(m['warm_s']['p95'] * 1000, '.0f')}",
                    f"floor {_f(m['reference_floor_s']['p50'] * 1000, '.0f')} · librosa {_f(m['reference_librosa_s']['p50'] * 1000, '.0f')}",
                    f"{_f(m['p50_vs_floor'])}× · {_f(m['p50_vs_librosa'])}×",
                    ("p95 ≤300 ms " + ("met" if m["warm_s"]["p95"] <= 0.3 else "MISSED")) if fmt_key == "wav_44k_stereo" else "",
                ])
        c = u["cold_start"]
        rows.append(["2 Upload → answer", f"first call after a cold start ({c['model']}; + {c['import_s']:.1f} s imports) (s)",
                     _f(c["first_call_s"]), "warm p50", f"{_f(c['first_call_vs_warm_p50'], '.1f')}×", ""])
    if not broken("training", "3 Training"):
        t = figs["training"]
        ref = (t["reference"]["torch_step_s_before"] + t["reference"]["torch_step_s_after"]) / 2
        rows.append(["3 Training", f"full retrain, all models (s); peak memory {t['peak_pss_mb']:.0f} MB PSS ({t['peak_rss_mb']:.0f} MB RSS)", _f(t["wall_seconds"], ".1f"),
                     f"torch step {ref * 1000:.0f} ms", f"{_f(t['ratios']['wall_vs_reference_step'], '.0f')} steps", _met(t["goals"]["retrain"])])
        for name, m in t["models"].items():
            per = m["seconds_per_epoch"].get("p50")
            rows.append(["3 Training", f"{name}: s/epoch p50 · epochs · total s" + (" (reuses conv_vae)" if m["reuses_conv_vae"] else ""),
                         f"{_f(per)} · {m['epochs_run']} · {_f(m['seconds_total'], '.1f')}", f"torch step {ref * 1000:.0f} ms",
                         f"{_f(m['epoch_vs_reference_step'], '.1f')} steps/epoch", ""])
    if not broken("app", "4 App start"):
        a = figs["app"]
        rows.append(["4 App start", "streamlit run → /_stcore/health (s, p50)", _f(a["health_s"]["p50"]), f"one-line app {_f(a['reference_health_s']['p50'])}",
                     f"{_f(a['ratios']['health_vs_reference'])}×", ""])
        rows.append(["4 App start", "streamlit run → first page rendered in Chromium (s, p50)", _f(a["first_page_s"]["p50"]),
                     f"one-line app {_f(a['reference_first_page_s']['p50'])}", f"{_f(a['ratios']['first_page_vs_reference'])}×", _met(a["goals"]["first_page"])])
    if not broken("map", "5 Map size"):
        m = figs["map"]
        ref = m["server"][0]
        browser = m.get("browser") or {}
        brow = {r["n"]: r for r in browser.get("rows", [])}
        bref = brow.get(m["reference_points"], {})
        for row in m["server"]:
            n = row["n"]
            b = brow.get(n, {})
            is_ref = n == m["reference_points"]
            drawn = b.get("page_to_drawn_s")
            rows.append([
                "5 Map size", f"{n:,} points{' (the collection: reference)' if is_ref else ''}: server build+JSON · payload · drawn in browser · pan step",
                f"{_f(row['server_total_s'] * 1000, '.0f')} ms · {_f(row['payload_mb'], '.2f')} MB · "
                + (f"{drawn:.2f} s · {_f(b.get('ms_per_drag_step'), '.0f')} ms" if drawn is not None else b.get("error", "–")),
                "" if is_ref else f"{_f(ref['server_total_s'] * 1000, '.0f')} ms · {_f(bref.get('page_to_drawn_s'))} s · {_f(bref.get('ms_per_drag_step'), '.0f')} ms",
                "" if is_ref else f"{_f(row.get('server_vs_reference'), '.1f')}× · {_f(b.get('drawn_vs_reference'), '.1f')}× · {_f(b.get('drag_step_vs_reference'), '.1f')}×",
                ("smooth" if b.get("smooth") else "not smooth") if b else "",
            ])
    if not broken("scaling", "6 Scaling"):
        sc = figs["scaling"]
        by = {(r["n"], r["jobs"]): r for r in sc["rows"]}
        small = sc["sizes"][0]
        for n in sc["sizes"]:
            one, two = by.get((n, 1)), by.get((n, 2))
            if not one or not two:
                continue
            rows.append([
                "6 Scaling", f"{n} clips: ms/clip 1 worker · 2 workers · peak memory PSS 1 / 2 workers (MB)",
                f"{one['ms_per_clip']:.1f} · {two['ms_per_clip']:.1f} · {one['peak_pss_mb']:.0f} / {two['peak_pss_mb']:.0f}",
                f"N={small}: {by[(small, 1)]['ms_per_clip']:.1f} · {by[(small, 2)]['ms_per_clip']:.1f}",
                f"{one['ms_per_clip'] / by[(small, 1)]['ms_per_clip']:.2f}× · speed-up {one['seconds'] / two['seconds']:.2f}×",
                "",
            ])
        fit = sc.get("linear_fit") or {}
        if "1" in fit and "2" in fit:
            rows.append(["6 Scaling", "linear fit, total = fixed + N x per clip: ms/clip 1 worker · 2 workers (fixed s)",
                         f"{fit['1']['ms_per_clip']:.1f} · {fit['2']['ms_per_clip']:.1f} ({fit['1']['fixed_s']:.1f} / {fit['2']['fixed_s']:.1f} s)", "",
                         f"speed-up {fit['1']['ms_per_clip'] / fit['2']['ms_per_clip']:.2f}× · memory {sc['memory_mb_per_clip'].get('1', float('nan')):.2f} MB/clip", ""])
        floor = (sc["reference"]["floor_ms_per_clip_before"] + sc["reference"]["floor_ms_per_clip_after"]) / 2
        rows.append(["6 Scaling", "floor (soundfile + bare rFFT, 1 core) on the same files (ms/clip)", "", f"{floor:.1f}", "", _met(sc["goals"]["flat"])])
    rows += _dask_rows(figs, broken) + _index_rows(figs, broken) + _stream_rows(figs, broken) + _projection_rows(results)
    if not broken("answer", "10 Answer in the browser"):
        from bench.answer import table_rows as answer_rows

        rows += answer_rows(figs["answer"], _met)
    if not broken("fresh", "11 Fresh machine"):
        from bench.freshstart import table_rows as fresh_rows

        rows += fresh_rows(figs["fresh"], _met)
    return rows


def _dask_rows(figs: dict, broken) -> list[list[str]]:
    if broken("dask", "7 Dask"):
        return []
    d, rows = figs["dask"], []
    by = {(r["n"], r["workers"]): r for r in d["rows"]}
    serial = (d["reference"]["serial_ms_per_track_before"] + d["reference"]["serial_ms_per_track_after"]) / 2
    small = d["sizes"][0]
    for n in d["sizes"]:
        one, two = by.get((n, 1)), by.get((n, 2))
        if not one or not two:
            continue
        rows.append(["7 Dask", f"{n:,} tracks: tracks/s 1 worker · 2 workers (ms/track 1 · 2)",
                     f"{one['tracks_per_s']:.1f} · {two['tracks_per_s']:.1f} ({one['ms_per_track']:.1f} · {two['ms_per_track']:.1f})",
                     f"no Dask {serial:.1f} ms/track · N={small}: {by[(small, 1)]['ms_per_track']:.1f}",
                     f"speed-up {d['ratios']['speedup_2_vs_1_workers'][str(n)]:.2f}× · {one['ms_per_track'] / by[(small, 1)]['ms_per_track']:.2f}× of N={small}",
                     _met(d["goals"]["speedup"]) if n == d["sizes"][-1] else ""])
    last = d["sizes"][-1]
    one, two = by.get((last, 1)), by.get((last, 2))
    if one and two:
        rows.append(["7 Dask", f"start-up (cluster + worker warm-up, s) 1 · 2 workers; peak RSS per worker · client (MB) at {last:,}",
                     f"{one['startup_s']:.1f} · {two['startup_s']:.1f}; {two['worker_peak_rss_mb']:.0f} · {two['client_peak_rss_mb']:.0f}",
                     f"store {two['store_mb_per_track']:.2f} MB/track", "", _met(d["goals"]["flat"])])
    fit = d.get("linear_fit") or {}
    if fit.get("1") and fit.get("2"):
        rows.append(["7 Dask", "linear fit, total = fixed + N x per track: ms/track 1 · 2 workers (fixed s)",
                     f"{fit['1']['ms_per_track']:.1f} · {fit['2']['ms_per_track']:.1f} ({fit['1']['fixed_s']:.1f} / {fit['2']['fixed_s']:.1f} s)",
                     "", "", ""])
    var = {r["workers"]: r for r in d.get("malloc_variant") or []}
    if var:
        r = d["ratios"]
        rows.append(["7 Dask", f"{last:,} tracks, MALLOC_TRIM_THRESHOLD_ unset in the workers: tracks/s " + " · ".join(f"{w}w" for w in sorted(var)),
                     " · ".join(f"{var[w]['tracks_per_s']:.1f}" for w in sorted(var)),
                     f"no Dask, with the nanny's setting: {d['reference']['serial_ms_per_track_nanny_malloc_env']:.1f} ms/track",
                     " · ".join(f"{r['unset_vs_dask_default_speed'][str(w)]:.2f}×" for w in sorted(var))
                     + (f" · speed-up {r['speedup_2_vs_1_workers_unset']:.2f}×" if r.get("speedup_2_vs_1_workers_unset") else ""), ""])
    return rows


def _index_rows(figs: dict, broken) -> list[list[str]]:
    if broken("index", "8 Index"):
        return []
    ix, rows = figs["index"], []
    big, small = ix["n_big"], ix["n_small"]
    for step, label in (("kmeans", "k-means (production path)"), ("minibatch", "MiniBatchKMeans"), ("map", "UMAP map")):
        b, sm = ix["steps"].get(f"{step}_{big}"), ix["steps"].get(f"{step}_{small}")
        if not b or not sm:
            continue
        extra = f" (fit {b['umap_fit_s']:.1f} + transform {b['umap_transform_s']:.1f} s)" if step == "map" and b.get("umap_transform_s") else ""
        rows.append(["8 Index", f"{label} of {big:,} tracks [{b['path']}]: s · peak RSS (+ step) MB",
                     f"{b['seconds']:.2f}{extra} · {b['peak_rss_mb']:.0f} (+{b['added_mb']:.0f})",
                     f"{small:,} tracks: {sm['seconds']:.2f} s · {sm['peak_rss_mb']:.0f} (+{sm['added_mb']:.0f})",
                     f"{ratio_text(b['seconds'], sm['seconds'])}", ""])
    up = ix["upload"]
    if "skipped" in up:
        rows.append(["8 Index", "upload -> answer", f"skipped: {up['skipped']}", "", "", ""])
    else:
        rows.append(["8 Index", f"upload -> answer with {big:,} tracks in the index: p50 / p95 (ms); place() alone p50",
                     f"{up['analyse_big_s']['p50'] * 1000:.0f} / {up['analyse_big_s']['p95'] * 1000:.0f}; {up['place_big_s']['p50'] * 1000:.1f}",
                     f"{small:,} tracks: {up['analyse_small_s']['p50'] * 1000:.0f} / {up['analyse_small_s']['p95'] * 1000:.0f}; "
                     f"{up['place_small_s']['p50'] * 1000:.1f}",
                     f"{up['analyse_big_vs_small_p50']:.2f}× · index adds {up['index_added_rss_mb']:.0f} MB RSS", _met(ix["goals"]["p95"])])
    return rows


def ratio_text(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.1f}×" if a is not None and b else "–"


def _stream_rows(figs: dict, broken) -> list[list[str]]:
    if broken("stream", "9 Stream training"):
        return []
    st, rows = figs["stream"], []
    first = st["rows"][0]
    for r in st["rows"]:
        rows.append(["9 Stream training", f"{r['n']:,} tracks: peak RSS (MB) · table / prepare s · fit s/batch ({r['batches']} batches)",
                     f"{r['peak_rss_mb']:.0f} · {r['phases']['table']['seconds']:.1f} / {r['phases']['prepare']['seconds']:.1f} · {r['fit_seconds_per_batch']:.2f}",
                     f"{first['n']:,} tracks: {first['peak_rss_mb']:.0f} MB", f"{r['peak_rss_mb'] / first['peak_rss_mb']:.2f}× · lyrics matrix {r['lyrics_matrix_mb']:.0f} MB",
                     _met(st["goals"]["flat"]) if r is st["rows"][-1] else ""])
    return rows


def _projection_rows(results: dict) -> list[list[str]]:
    from bench.projection import lines

    p = results.get("projection")
    if not p:
        return []
    return [[f"Projection {p['tracks']:,} tracks / {p['workers']} workers", line.split(": ", 1)[0], line.split(": ", 1)[1], "", "", ""] for line in lines(p)]


def format_table(results: dict) -> str:
    header = ["figure", "measure", "ours", "reference (same run)", "ratio", "goal"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(results):
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    m = results["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, Python {m['python']}; "
                 f"load average {m['load_average_at_start'][0]:.1f} at start, {m.get('load_average_at_end', [float('nan')])[0]:.1f} at end; "
                 f"commit {m['git_commit']}; run took {results.get('seconds', 0) / 60:.1f} min.")
    loads = [f"{name} {fig['load_average'][0]:.1f} → {fig['load_average'][1]:.1f}" for name, fig in results["figures"].items() if fig.get("load_average")]
    if loads:
        lines.append(f"Load average (1 min) at each figure's start → end: {'; '.join(loads)}.")
    return "\n".join(lines)


def write(results: dict, out: Optional[str]) -> Path:
    from bench.common import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(out) if out else RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, default=str)
    path.write_text(text)
    (path.with_suffix(".md")).write_text(format_table(results) + "\n")
    if not out:
        (RESULTS / "latest.json").write_text(text)
    return path


def run_from_args(args) -> int:
    results = run(args)
    path = write(results, args.out)
    print(format_table(results))
    print(f"\nJSON: {path}", file=sys.stderr)
    failed = [name for name, fig in results["figures"].items() if "error" in fig]
    if failed:
        print(f"error: figure(s) failed: {', '.join(failed)} (see the JSON)", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from musiclust.errors import MusiclustError

    parser = argparse.ArgumentParser(prog="musiclust bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run_from_args(parser.parse_args(argv))
    except MusiclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # As a script (python bench/run.py) Python puts bench/ first on sys.path, not the repository: put the
    # repository there, as `python -m musiclust bench` has it, so musiclust and bench import on a clean clone.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
