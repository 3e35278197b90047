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

            out = tr.run(s["data"], Path(tmp_ckpt), log, epochs=s["epochs"], reference_steps=3 if s["quick"] else 20)
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


def write(results: dict, out: Optional[str]) -> Path:
    from bench.common import RESULTS
    from bench.table import format_table

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
    from bench.table import format_table

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
