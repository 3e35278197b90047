"""What should a model hear of a full-length track? Compare FeatureConfig.excerpt policies by how well
the tracks cluster by their known groups (issue 12, section 5).

For each policy (the middle 30 s, as before; or n windows of 30/n s spread across the track) the
folder is featurized, then clustered with k = the true number of groups and scored against the groups
(NMI, ARI; mean ± std over seeds), for MFCC statistics + k-means, PCA + k-means, and optionally trained
models (``--models conv_vae basic_vae``, over the first ``--seeds`` seeds). With ~100 tracks k-means'
initialisation alone moves NMI by ±0.05, so the baselines run ``--baseline-seeds`` seeds, and each space
also gets the leave-one-out 1-nearest-neighbour accuracy against the groups: deterministic, no k-means.

    python scripts/experiments/excerpt_policy.py --data FOLDER --seeds 3 --models conv_vae \\
        --out docs/results/excerpt_policy.json

FOLDER holds one sub-folder per group of full-length recordings (e.g. one per soundtrack).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from provenance import REPO, one_thread, provenance, write_results  # noqa: E402

# name -> (excerpt, windows, clip_seconds): the first four hear 30 s of each track; the last two 50 s
# (5 windows of 10 s, and its control: the middle 50 s), to tell "more audio" from "spread out".
POLICIES = {
    "middle": ("middle", 3, 30.0), "windows3": ("windows", 3, 30.0), "windows5": ("windows", 5, 30.0),
    "windows10": ("windows", 10, 30.0), "middle50": ("middle", 3, 50.0), "windows5x10": ("windows", 5, 50.0),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of group sub-folders of full-length tracks")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--append", action="store_true", help="add to the policies already in --out")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the trained models")
    parser.add_argument("--baseline-seeds", type=int, default=10, help="seeds of the k-means baselines")
    parser.add_argument("--models", nargs="*", default=[], help="trained models to score too, e.g. conv_vae")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the fit loop's)")
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "cache" / "features")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "excerpt_policy.json")
    args = parser.parse_args(argv)
    one_thread()

    from musiclust.analysis.baselines import pca_embedding
    from musiclust.analysis.clustering import Standardizer, cluster
    from musiclust.analysis.metrics import external_scores
    from musiclust.config import FeatureConfig
    from musiclust.data.collection import load_folder
    from musiclust.pipeline import Settings, prepare, train_model
    from musiclust.store.table import featurize

    collection = load_folder(args.data)
    record = {
        **provenance(),
        "data": {"folder": str(args.data), "tracks": len(collection), "groups": sorted({t.group for t in collection.tracks if t.group})},
        "protocol": "k = true number of groups; k-means on the standardised space; NMI/ARI against the groups over all tracks; "
                    "mean ± std over seeds 0..S-1 (features are deterministic: seeds vary the clustering and training)",
        "policies": {},
    }
    if args.append and args.out.is_file():
        import json

        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        record["policies"] = earlier.get("policies", {})
        record["earlier_runs"] = earlier.get("earlier_runs", []) + [{k: earlier.get(k) for k in ("commit", "machine", "date", "command")}]
    for name in args.policies:
        excerpt, windows, clip_seconds = POLICIES[name]
        config = FeatureConfig(excerpt=excerpt, excerpt_windows=windows, clip_seconds=clip_seconds)
        started = time.perf_counter()
        table = featurize(collection, config, cache_dir=args.cache, jobs=args.jobs)
        featurize_s = time.perf_counter() - started
        truth = [str(g) for g in table.groups]
        k = len(set(truth))
        rows = {"mfcc_kmeans": [], "pca_kmeans": [], **{m: [] for m in args.models}}
        knn = {"mfcc": [], "pca": []}
        for seed in range(max(args.seeds, args.baseline_seeds)):
            prep = prepare(table, Settings(seed=seed, epochs=args.epochs))
            spaces = {
                "mfcc_kmeans": table.mfcc_stats,
                "pca_kmeans": pca_embedding(table, prep.normalizer, prep.train_rows, prep.settings.latent_dim, seed, segments=prep.segments),
            }
            for row, raw in spaces.items():
                space = Standardizer.fit(raw)(raw)
                labels, _ = cluster(space, k, "kmeans", seed)
                rows[row].append(external_scores(truth, labels))
                if row == "pca_kmeans" or seed == 0:  # MFCC statistics do not depend on the seed
                    knn[row.split("_")[0]].append(nearest_neighbour_accuracy(space, truth))
            for model in (args.models if seed < args.seeds else []):
                t0 = time.perf_counter()
                bundle = train_model(model, prep)
                scores = bundle.meta["metrics"]
                rows[model].append({"nmi": scores["nmi"], "ari": scores["ari"], "seconds": time.perf_counter() - t0})
            print(f"{name} seed {seed}: " + ", ".join(f"{r} nmi={v[seed]['nmi']:.3f}" for r, v in rows.items() if len(v) > seed), file=sys.stderr)
        record["policies"][name] = {
            "config": {"excerpt": excerpt, "excerpt_windows": windows, "clip_seconds": config.clip_seconds},
            "description": config.excerpt_description,
            "measured": {"commit": record["commit"], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            "tracks": len(table),
            "skipped": table.skipped,
            "featurize_seconds": featurize_s,
            "loo_1nn_accuracy": {space: {"mean": float(np.mean(v)), "std": float(np.std(v))} for space, v in knn.items()},
            "rows": {
                r: {
                    "nmi_mean": float(np.mean([s["nmi"] for s in v])), "nmi_std": float(np.std([s["nmi"] for s in v])),
                    "ari_mean": float(np.mean([s["ari"] for s in v])), "ari_std": float(np.std([s["ari"] for s in v])),
                    "per_seed": v,
                }
                for r, v in rows.items()
            },
        }
        write_results(args.out, record)  # after every policy: a stopped run keeps what it measured
    for name, result in record["policies"].items():
        print(name, "  ".join(f"{r}: NMI {v['nmi_mean']:.3f} ± {v['nmi_std']:.3f}" for r, v in result["rows"].items()),
              "  1-NN:", "  ".join(f"{s} {v['mean']:.3f}" for s, v in result["loo_1nn_accuracy"].items()))
    return 0


def nearest_neighbour_accuracy(space: np.ndarray, truth: list[str]) -> float:
    """Share of tracks whose nearest other track (Euclidean) has the same group: leave-one-out 1-NN."""
    from musiclust.analysis.clustering import exact_knn

    indices, _ = exact_knn(space, 2)  # itself first, then its nearest neighbour
    labels = np.asarray(truth)
    return float(np.mean(labels[indices[:, 1]] == labels))


if __name__ == "__main__":
    raise SystemExit(main())
