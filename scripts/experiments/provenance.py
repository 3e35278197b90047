"""Where a result came from: commit, machine and date, written into every results file.

An experiment's numbers mean something only beside the code and machine that produced them
(issue 13: "records the commit, machine and date").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def provenance() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "python": sys.version.split()[0],
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_results(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def one_thread() -> None:
    """One BLAS/OpenMP thread: on a shared 2-core machine, k-means' default threads spin against the
    other processes (a 300-point, 11-k sweep took 204 s with default threads, 14 s with one)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def mean_std(values) -> dict:
    """``{"mean", "std"}`` of a result over seeds, as every results file's summary gives it."""
    import numpy as np

    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def seeded_splits(table, seeds: int):
    """``(seed, prep, pca_mse_db)`` for seeds 0 .. ``seeds`` - 1: the pipeline's split of ``table`` for that
    seed and the held-out reconstruction error of PCA of the latent's size on it, the reference every
    model's error is read against."""
    from musiclust.analysis.baselines import pca_reconstruction_mse_db
    from musiclust.pipeline import Settings, prepare

    for seed in range(seeds):
        prep = prepare(table, Settings(seed=seed))
        yield seed, prep, pca_reconstruction_mse_db(prep.segment_pca(), table, prep.normalizer, prep.val_rows, prep.segments)
