"""Which criterion finds the number of groups? Sweep k under every criterion of
:mod:`musiclust.analysis.ksweep` on embeddings whose true number of groups is known (issue 12, section 3).

Sets have a role, stated in the results: **selection** sets (the default set, and subsets of its groups
so the true k varies from 3 to 7) are where the default criterion is chosen; **report** sets (real
recordings, the piano variant) are scored only after the choice, with nothing tuned on them.

    python scripts/experiments/ksweep_criteria.py --subsets 3 4 5 --draws 2 \\
        --real dev5=/path/to/soundtracks:windows --out docs/results/ksweep_criteria.json

``--real NAME=FOLDER[:middle|windows]`` adds a folder of group sub-folders as a report set (MFCC
statistics and PCA spaces), featurized with that excerpt policy.
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


def spaces_of(table, seed: int, with_pca: bool) -> dict:
    """Standardised MFCC-statistics space, and the PCA baseline's space (as ``evaluate`` builds them)."""
    from musiclust.analysis.baselines import pca_embedding
    from musiclust.analysis.clustering import Standardizer
    from musiclust.pipeline import Settings, prepare

    out = {"mfcc": Standardizer.fit(table.mfcc_stats)(table.mfcc_stats)}
    if with_pca:
        prep = prepare(table, Settings(seed=seed))
        raw = pca_embedding(table, prep.normalizer, prep.train_rows, prep.settings.latent_dim, seed, segments=prep.segments)
        out["pca"] = Standardizer.fit(raw)(raw)
    return out


def subset_table(table, groups: list[str]):
    from musiclust.store.table import TrackTable

    rows = [i for i, g in enumerate(table.groups) if g in groups]
    return TrackTable(
        tracks=[table.tracks[i] for i in rows], mels=[table.mels[i] for i in rows],
        mfcc_stats=table.mfcc_stats[rows], durations=table.durations[rows], config=table.config,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="natural", help="default-set variant used for selection")
    parser.add_argument("--no-selection", action="store_true", help="score only the report sets (the choice was made)")
    parser.add_argument("--report-variants", nargs="*", default=[], help="default-set variants scored as report sets (e.g. piano)")
    parser.add_argument("--subsets", nargs="*", type=int, default=[3, 4, 5], help="sizes of group subsets of the default set")
    parser.add_argument("--draws", type=int, default=2, help="random subsets per size")
    parser.add_argument("--real", action="append", default=[], help="NAME=FOLDER[:middle|windows] report set")
    parser.add_argument("--criteria", nargs="+", default=None)
    parser.add_argument("--k-max", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "cache" / "features")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "ksweep_criteria.json")
    args = parser.parse_args(argv)
    one_thread()

    from musiclust.analysis.ksweep import CRITERIA, RULES, sweep_all
    from musiclust.config import FeatureConfig
    from musiclust.data.collection import load_default, load_folder
    from musiclust.store.table import featurize

    criteria = tuple(args.criteria or CRITERIA)
    record = {
        **provenance(),
        "protocol": f"k-means (n_init=10) partitions for k = 2..min({args.k_max}, N // 2), seed {args.seed}; "
                    "each criterion read by its rule; spaces standardised per dimension",
        "rules": {c: RULES[c] for c in criteria},
        "sets": [],
    }
    rng = np.random.default_rng(args.seed)
    jobs = []  # (name, role, table, with_pca)
    if not args.no_selection:
        natural = featurize(load_default(args.variant), FeatureConfig(), cache_dir=args.cache, jobs=1)
        jobs.append((f"default-{args.variant}", "selection", natural, True))
        names = natural.label_names()
    for size in ([] if args.no_selection else args.subsets):
        for draw in range(args.draws):
            groups = sorted(rng.choice(names, size, replace=False).tolist())
            jobs.append((f"default-{args.variant}[{'+'.join(groups)}]", "selection", subset_table(natural, groups), False))
    for variant in args.report_variants:
        jobs.append((f"default-{variant}", "report", featurize(load_default(variant), FeatureConfig(), cache_dir=args.cache, jobs=1), True))
    for spec in args.real:
        name, _, rest = spec.partition("=")
        folder, _, excerpt = rest.partition(":")
        config = FeatureConfig(excerpt=excerpt or "middle")
        jobs.append((f"{name}({config.excerpt})", "report", featurize(load_folder(Path(folder)), config, cache_dir=args.cache, jobs=1), True))

    for name, role, table, with_pca in jobs:
        true_k = len(table.label_names())
        for space_name, space in spaces_of(table, args.seed, with_pca).items():
            started = time.perf_counter()
            timings = {}
            sweeps = {}
            for criterion in criteria:
                t0 = time.perf_counter()
                sweeps.update(sweep_all(space, args.seed, (2, args.k_max), (criterion,)))
                timings[criterion] = time.perf_counter() - t0
            entry = {
                "set": name, "role": role, "space": space_name, "n_tracks": len(table), "true_k": true_k,
                "chosen": {c: s.k_ for c, s in sweeps.items()},
                "seconds": timings,
                "sweeps": {c: s.to_dict() for c, s in sweeps.items()},
            }
            record["sets"].append(entry)
            print(f"{name} [{space_name}] true k={true_k}: " + " ".join(f"{c}={k}" for c, k in entry["chosen"].items())
                  + f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            write_results(args.out, record)
    record["summary"] = summarize(record["sets"], criteria)
    write_results(args.out, record)
    for role, rows in record["summary"].items():
        print(f"{role}:")
        for c, v in rows.items():
            print(f"  {c:18s} exact {v['exact']}/{v['sets']}  mean |k - true k| {v['mean_abs_error']:.2f}")
    return 0


def summarize(sets: list[dict], criteria) -> dict:
    """Per role and criterion: how often the chosen k is the true k, and the mean absolute error."""
    out = {}
    for role in ("selection", "report"):
        rows = [s for s in sets if s["role"] == role]
        if rows:
            out[role] = {
                c: {
                    "sets": len(rows),
                    "exact": sum(s["chosen"][c] == s["true_k"] for s in rows),
                    "mean_abs_error": float(np.mean([abs(s["chosen"][c] - s["true_k"]) for s in rows])),
                }
                for c in criteria
            }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
