"""MusiCNN on the real-recording development set: extraction time, choices on a selection split, report.

Stages (each writes ``docs/results/musicnn_real_<stage>.json`` with commit, machine, date and load):

* ``extract``: mel features and MusiCNN embeddings of every track (both cached); times per clip.
* ``select``: choices scored on the SELECTION half only (see :func:`split_halves`).
* ``report``: the frozen choices on the REPORT half, and on all tracks, beside the baselines.

The split: within each soundtrack the tracks are ordered by the SHA-256 of their piece id and the
first half (rounded up) is the selection half. Every track is its own piece, so no piece is on both
sides. k = 8 (the soundtracks) everywhere.

Run from the worktree root: ``python scripts/experiments/musicnn_real.py extract --jobs 2``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from musiclust.analysis import results  # noqa: E402
from musiclust.analysis.baselines import musicnn_track_embedding  # noqa: E402
from musiclust.analysis.clustering import Standardizer, cluster  # noqa: E402
from musiclust.analysis.metrics import score_partition  # noqa: E402
from musiclust.config import FeatureConfig  # noqa: E402
from musiclust.data.collection import Collection, load_folder  # noqa: E402
from musiclust.paths import PRETRAINED_CACHE, RESULTS_DIR  # noqa: E402
from musiclust.pretrained.store import PretrainedStore  # noqa: E402
from musiclust.store.table import TrackTable, featurize  # noqa: E402

REAL = Path(os.environ.get("MUSICLUST_REAL_SET", Path(__file__).resolve().parents[2] / "data" / "real"))


AT_START = results.git_state(REPO)  # the code that runs is the code at start, whatever is committed meanwhile


def provenance(load_start) -> dict:
    commit, dirty = AT_START
    return {"commit": commit, "dirty": dirty, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": results.machine_info(load_start), "libraries": results.library_versions(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def write(stage: str, record: dict) -> Path:
    path = RESULTS_DIR / f"musicnn_real_{stage}{os.environ.get('MUSICNN_REAL_SUFFIX', '')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=float) + "\n", encoding="utf-8")
    return path


def split_halves(collection: Collection) -> tuple[list, list]:
    """(selection tracks, report tracks): half of each soundtrack by the hash of the piece id."""
    selection, report = [], []
    for group in collection.groups:
        tracks = sorted((t for t in collection.tracks if t.group == group),
                        key=lambda t: hashlib.sha256(t.piece.encode()).hexdigest())
        half = (len(tracks) + 1) // 2
        selection += tracks[:half]
        report += tracks[half:]
    return selection, report


def halves(args) -> None:
    """``selection-half.csv`` and ``report-half.csv`` in the set's folder (path, title, genre = soundtrack):
    ``python -m musiclust evaluate --data data/real/report-half.csv --groups column`` scores the report half."""
    import csv

    selection, report = split_halves(load_folder(REAL, groups="folder"))
    for name, tracks in (("selection", selection), ("report", report)):
        out = REAL / f"{name}-half.csv"
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "title", "genre"])
            for t in tracks:
                writer.writerow([str(Path(t.path).resolve().relative_to(REAL.resolve())), t.title, t.group])
        print(f"{out}: {len(tracks)} tracks")


def subset(collection: Collection, tracks: list, name: str) -> Collection:
    keep = {t.id for t in tracks}
    return Collection(name, [t for t in collection.tracks if t.id in keep], {}, collection.group_source)


def load_real(jobs: int = 1) -> tuple[Collection, TrackTable]:
    collection = load_folder(REAL, groups="folder")
    return collection, featurize(collection, FeatureConfig(), jobs=jobs)


def extract(args) -> None:
    load = os.getloadavg()
    collection = load_folder(REAL, groups="folder")
    started = time.perf_counter()
    table = featurize(collection, FeatureConfig(), jobs=args.jobs)
    mel_seconds = time.perf_counter() - started
    store = PretrainedStore(Path(args.cache) if args.cache else PRETRAINED_CACHE, table.config, args.model)
    if args.limit:  # every (N // limit)-th track: all soundtracks
        rows = list(range(0, len(table), max(1, len(table) // args.limit)))[: args.limit]
        table = TrackTable([table.tracks[i] for i in rows], [table.mels[i] for i in rows], table.mfcc_stats[rows],
                           table.durations[rows], table.config)
    done = []

    def progress(i, n):
        if i % 20 == 0 or i == n:
            print(f"musicnn {i}/{n} {time.perf_counter() - started:.0f} s", flush=True)
            done.append(i)

    report = store.get_many([t.path for t in table.tracks], jobs=args.jobs, progress=progress)
    segs = [report.features[str(t.path)].penultimate.shape[0] for t in table.tracks]
    mel_segs = [m.shape[1] // table.config.segment_frames for m in table.mels]
    record = {
        **provenance(load),
        "stage": "extract", "data": str(REAL), "tracks": len(table), "groups": len(table.label_names()),
        "model": args.model, "cache_key": store.key(), "jobs": args.jobs,
        "mel_features_seconds": round(mel_seconds, 1),
        "musicnn": {"computed": report.computed, "cached": report.cached, "failed": report.failed,
                    "wall_seconds": round(report.seconds, 1),
                    "summed_seconds_per_clip": round(report.compute_seconds / max(1, report.computed), 2),
                    "cpu_seconds_per_clip": round(report.compute_cpu_seconds / max(1, report.computed), 2),
                    "clip_seconds": table.config.clip_seconds},
        "segments_match_mel": bool(segs == mel_segs), "segments_per_track": [int(min(segs)), int(max(segs))],
    }
    print(json.dumps(record, indent=1, default=float))
    if args.save:
        print("wrote", write("extract", record))


# ----------------------------------------------------------------------------- selection
SPACES = {  # how a track embedding becomes the space k-means runs in
    "raw": lambda x: x,
    "zscore": lambda x: Standardizer.fit(x)(x),
    "l2": lambda x: x / np.linalg.norm(x, axis=1, keepdims=True),
    "zscore_l2": lambda x: Standardizer(*_fit(x), True)(x),
    "centred": lambda x: x - x.mean(axis=0),
}
VARIANTS = {  # MusiCNNVAE configs tried on the selection half
    "readout": {"mel_expert": False, "mel_weight": 0.0},
    "elbo": {"mel_expert": False, "mel_weight": 1.0},
    "poe": {"mel_expert": True, "mel_weight": 1.0},
    "readout_l16": {"mel_expert": False, "mel_weight": 0.0, "latent_dim": 16},
    "readout_beta0.25": {"mel_expert": False, "mel_weight": 0.0, "beta": 0.25},
    "track": {"mel_expert": False, "mel_weight": 0.0, "track_weight": 1.0},
    "track_l16": {"mel_expert": False, "mel_weight": 0.0, "track_weight": 1.0, "latent_dim": 16},
    "track_only": {"mel_expert": False, "mel_weight": 0.0, "track_weight": 4.0, "pretrained_weight": 0.25},
    "contrast10": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 10.0},
    "contrast50": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 50.0},
    "contrast200": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 200.0},
    "contrast500": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 500.0},
    "contrast1000": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 1000.0},
    "contrast200_t0.5": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 200.0, "contrast_temperature": 0.5},
    "contrast100_t0.5": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 100.0, "contrast_temperature": 0.5},
    "contrast400_t0.5": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 400.0, "contrast_temperature": 0.5},
    "contrast200_t1": {"mel_expert": False, "mel_weight": 0.0, "contrast_weight": 200.0, "contrast_temperature": 1.0},
}


def held_out_mse_db(model, prep) -> float:
    """Reconstruction MSE (dB²) over the held-out tracks, as the pipeline scores it."""
    import torch

    from musiclust.analysis.reconstruction import mean_reconstruction_mse_db

    def pairs():
        with torch.inference_mode():
            for i in prep.val_rows:
                batch = {"mel": torch.from_numpy(prep.segments[i]).unsqueeze(1), "pretrained": torch.from_numpy(prep.pretrained[i])}
                recon = model.reconstruct(batch).squeeze(1).numpy()
                yield prep.table.mels[i], prep.normalizer.invert(np.concatenate(list(recon), axis=1))

    return mean_reconstruction_mse_db(pairs())


def _fit(x):
    s = Standardizer.fit(x)
    return s.mean, s.scale


def scores(space: np.ndarray, groups: list, k: int, seed: int) -> dict:
    labels, _ = cluster(space.astype(np.float32), k, "kmeans", seed)
    s = score_partition(space, labels, groups)
    return {"nmi": round(s["nmi"], 4), "ari": round(s["ari"], 4)}


def track_embeddings(model, prep) -> np.ndarray:
    """The mean posterior mean of each track's segments, as the bundle computes it."""
    import torch

    out = []
    with torch.inference_mode():
        for segs, vecs in zip(prep.segments, prep.pretrained):
            batch = {"mel": torch.from_numpy(segs).unsqueeze(1), "pretrained": torch.from_numpy(vecs)}
            out.append(model.embed(batch).numpy().mean(axis=0))
    return np.stack(out)


def half_table(which: str, jobs: int) -> TrackTable:
    collection = load_folder(REAL, groups="folder")
    chosen = split_halves(collection)[0 if which == "selection" else 1] if which != "all" else collection.tracks
    return featurize(subset(collection, chosen, f"real-{which}"), FeatureConfig(), jobs=jobs)


def select(args) -> None:
    import torch

    from musiclust.analysis.baselines import pca_reconstruction_mse_db
    from musiclust.models import build_model
    from musiclust.models.training import TrainConfig, fit
    from musiclust.pipeline import Settings, prepare
    from musiclust.pretrained.store import attach_pretrained

    torch.set_num_threads(1)
    load = os.getloadavg()
    table = half_table("selection", args.jobs)
    variants = {k: v for k, v in VARIANTS.items() if not args.variants or k in args.variants.split(",")}
    rows = []
    for seed in range(args.seeds):
        prep = prepare(table, Settings(seed=seed, k=8))
        attach_pretrained(prep, jobs=args.jobs)
        groups = table.groups
        pen = musicnn_track_embedding(prep.pretrained)
        both = np.stack([p.mean(axis=0) for p in prep.pretrained])
        for space in SPACES:
            rows.append({"seed": seed, "row": "musicnn_kmeans", "input": "penultimate", "space": space, **scores(SPACES[space](pen), groups, 8, seed)})
            rows.append({"seed": seed, "row": "musicnn_kmeans", "input": "penultimate+tags", "space": space, **scores(SPACES[space](both), groups, 8, seed)})
        rows.append({"seed": seed, "row": "mfcc_kmeans", "space": "zscore", **scores(SPACES["zscore"](table.mfcc_stats), groups, 8, seed)})
        pca_mse = pca_reconstruction_mse_db(prep.segment_pca(), table, prep.normalizer, prep.val_rows, prep.segments)
        for name, cfg in variants.items():
            shape = {"latent_dim": 32, "n_mels": table.config.n_mels, "frames": table.config.segment_frames}
            model = build_model("musicnn_vae", {**shape, **cfg}, seed=seed)
            started = time.perf_counter()
            result = fit(model, prep.data(prep.train_rows), prep.data(prep.val_rows), TrainConfig(seed=seed, epochs=args.epochs))
            seconds = time.perf_counter() - started
            emb = track_embeddings(model, prep)
            for space in ("centred", "l2"):  # the two spaces the pipeline offers a model (cluster_on_direction)
                rows.append({"seed": seed, "row": f"musicnn_vae:{name}", "space": space, **scores(SPACES[space](emb), groups, 8, seed),
                             "best_epoch": result.best_epoch, "train_seconds": round(seconds, 1),
                             "reconstruction_mse_db": round(held_out_mse_db(model, prep), 3), "pca_reconstruction_mse_db": round(pca_mse, 3)})
            print(rows[-1], flush=True)
    summary = summarise(rows)
    for line in summary:
        print(line)
    record = {**provenance(load), "stage": "select", "split": "SELECTION half (choices are made here)",
              "tracks": len(table), "groups": len(table.label_names()), "k": 8, "seeds": list(range(args.seeds)),
              "epochs": args.epochs, "variants": variants, "summary": summary, "rows": rows}
    if args.save:
        print("wrote", write("select", record))


def summarise(rows: list) -> list:
    keys = {}
    for r in rows:
        keys.setdefault((r["row"], r.get("input", ""), r["space"]), []).append(r)
    out = []
    for (row, inp, space), rs in keys.items():
        nmi, ari = np.array([r["nmi"] for r in rs]), np.array([r["ari"] for r in rs])
        out.append({"row": row, "input": inp, "space": space, "n_seeds": len(rs),
                    "nmi": round(float(nmi.mean()), 4), "nmi_std": round(float(nmi.std()), 4),
                    "ari": round(float(ari.mean()), 4), "ari_std": round(float(ari.std()), 4),
                    **{key: round(float(np.mean([r[key] for r in rs])), 3) for key in ("reconstruction_mse_db", "pca_reconstruction_mse_db")
                       if all(key in r for r in rs)}})
    return out


# ----------------------------------------------------------------------------- report
REPORT_NAMES = ["random", "mfcc_kmeans", "pca_kmeans", "musicnn_kmeans", "conv_vae", "musicnn_vae"]


def report(args) -> None:
    import torch

    from musiclust.analysis.evaluation import evaluate, to_records
    from musiclust.pipeline import Settings

    torch.set_num_threads(1)
    load = os.getloadavg()
    names = args.models.split(",") if args.models else REPORT_NAMES
    sets = {}
    for which in args.sets.split(","):
        table = half_table(which, args.jobs)
        started = time.perf_counter()
        summary, rows = evaluate(table, names, Settings(seed=0, k=8, epochs=args.epochs), seeds=args.seeds,
                                 progress=lambda m: print(m, file=sys.stderr, flush=True))
        records = to_records(summary)
        for r in records:
            print(which, r["model"], f"nmi {r['nmi']:.3f} ± {r.get('nmi_std') or 0:.3f}", f"ari {r['ari']:.3f} ± {r.get('ari_std') or 0:.3f}", flush=True)
        sets[which] = {"tracks": len(table), "groups": len(table.label_names()), "seconds": round(time.perf_counter() - started, 1),
                       "summary": records, "rows": rows}
    record = {**provenance(load), "stage": "report",
              "split": {"report": "REPORT half: never used for a choice", "all": "all 195 tracks (half of them were the selection half)"},
              "k": 8, "seeds": list(range(args.seeds)), "epochs": args.epochs, "models": names, "sets": sets}
    if args.save:
        print("wrote", write("report", record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("extract")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--model", default="MTT_musicnn")
    p.add_argument("--cache", default="", help="another cache folder (e.g. an empty one, to time a first extraction)")
    p.add_argument("--limit", type=int, default=0, help="only this many tracks, spread over the set")
    p.add_argument("--save", action="store_true")
    p = sub.add_parser("select")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--variants", default="")
    p.add_argument("--save", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sets", default="report,all")
    p.add_argument("--epochs", type=int, default=45, help="chosen on the selection half (see the select results)")
    p.add_argument("--models", default="")
    p.add_argument("--save", action="store_true")
    sub.add_parser("halves", help="write the two halves as CSV manifests beside the set, for `musiclust evaluate --data`")
    args = parser.parse_args()
    {"extract": extract, "select": select, "report": report, "halves": halves}[args.stage](args)


if __name__ == "__main__":
    main()
