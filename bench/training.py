"""Figure 3: a full retrain of every model, as a user runs it (``python -m musiclust train --models all``).

The command runs in its own process, into a temporary checkpoints folder (never the repository's);
its wall time and peak memory (RSS and PSS of the process and its children, sampled every 50 ms) are measured, and
each model's epochs and seconds are read back from the checkpoints it wrote. The feature cache is
filled first (that is featurization, figure 1), so the retrain measures training. Reference, measured in
the same run just before and after: a fixed torch workload (one conv autoencoder training step on a
64 x 1 x 128 x 128 batch, torch's default threads), so a slow moment of a noisy machine shows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from bench.common import REPO, Log, goal, python_env, ratio, run_workers, summary
from bench.memory import PeakRSS

GOAL_SECONDS = 120.0


def torch_reference(steps: int = 20) -> float:
    """Median seconds of the fixed torch training step (in a fresh process)."""
    r = run_workers([{"kind": "torch_reference", "steps": steps}], single_thread=False)[0]
    return float(np.median(r["times"]))


def warm_feature_cache(data: str, log: Log) -> dict:
    """Featurize the collection into the default cache (as ``train`` would), and say what that took."""
    from musiclust.data.collection import load_collection
    from musiclust.store.table import DEFAULT_CACHE
    from musiclust.features.mel import FeatureStore

    collection = load_collection(data)
    t = time.perf_counter()
    report = FeatureStore(DEFAULT_CACHE).get_many([tr.path for tr in collection.tracks], jobs=2, progress=lambda d, n: None)
    seconds = time.perf_counter() - t
    log(f"training: feature cache ready for {len(collection)} tracks ({report.computed} computed, {report.cached} cached) in {seconds:.1f} s")
    return {"tracks": len(collection), "computed": report.computed, "cached": report.cached, "failed": len(report.failed), "seconds": seconds}


def run(data: str, out: Path, log: Log, epochs: Optional[int] = None, extra_args: tuple = (), reference_steps: int = 20) -> dict:
    from musiclust.models.registry import spec
    from musiclust.serving import checkpoint as ckpt
    from musiclust.service import dataset_slug

    cache = warm_feature_cache(data, log)
    ref_before = torch_reference(reference_steps)
    cmd = [sys.executable, "-m", "musiclust", "train", "--data", data, "--models", "all", "--checkpoints", str(out), *extra_args]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    log(f"training: {' '.join(cmd[1:])}")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=python_env(single_thread=False), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as mem:
        out_text, err_text = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {err_text[-2000:]}")
    ref_after = torch_reference(reference_steps)
    root = Path(out) / dataset_slug(data)
    models = {}
    for name in ckpt.available(root):
        meta = ckpt.load(root, name).meta
        history = meta.get("history") or []
        cumulative = [row.get("seconds", 0.0) for row in history]
        per_epoch = np.diff([0.0] + cumulative).tolist() if cumulative else []
        models[name] = {
            "epochs_run": len(history),
            "epochs_max": (meta.get("settings") or {}).get("epochs"),
            "best_epoch": meta.get("best_epoch"),
            "stopped_early": meta.get("stopped_early"),
            "train_seconds": meta.get("train_seconds"),
            "seconds_total": meta.get("seconds_total"),
            "seconds_per_epoch": summary(per_epoch) if per_epoch else {"n": 0},
            "reuses": spec(name).reuses,  # the model whose trained network it takes as it is
        }
    ref = (ref_before + ref_after) / 2
    for m in models.values():
        p50 = m["seconds_per_epoch"].get("p50")
        m["epoch_vs_reference_step"] = ratio(p50, ref)
    counted = sum(m["seconds_total"] or 0.0 for m in models.values())
    return {
        "data": data,
        "command": " ".join(["python", *cmd[1:]]),
        "feature_cache": cache,
        "wall_seconds": wall,
        "models_seconds": counted,
        "other_seconds": wall - counted,
        "peak_rss_mb": mem.peak_mb,
        "peak_pss_mb": mem.peak_pss_mb,
        "models": models,
        "reference": {"torch_step_s_before": ref_before, "torch_step_s_after": ref_after},
        "ratios": {"wall_vs_reference_step": ratio(wall, ref)},
        "goals": {"retrain": goal(f"full retrain of all models <= {GOAL_SECONDS:.0f} s on 2 cores ({wall:.0f} s)", wall <= GOAL_SECONDS)},
        "checkpoints": str(out),
        "log_tail": err_text[-1500:],
    }
