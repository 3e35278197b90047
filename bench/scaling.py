"""Figure 6: featurizing a growing library — 100, 200, 400, 800 clips — with 1 and 2 worker processes.

What a user runs: :meth:`musiclust.features.mel.FeatureStore.get_many` into a fresh, empty cache (content
hashing, decoding, features, atomic cache writes, results gathered in memory), each run in its own
process whose peak resident memory (process + its workers) is sampled. Clips beyond the collection's
size are real clips repeated, each copy nudged by one LSB so its content hash differs and nothing is
served from the cache. Memory is the peak PSS of the process tree (shared pages of forked
workers counted once; RSS summed over processes is reported too). Time per clip should stay flat as N grows (linear total); the 2-worker speed-up
is the ratio of the 1-worker time to the 2-worker time at the same N. Reference, measured in the same
run: the N = smallest time per clip (for flatness) and the floor (soundfile + bare rFFT, one core) on
the same files before and after the runs (machine speed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.common import Log, distinct_copies, goal, linear_fit, ratio, run_workers

FLAT_TOLERANCE = 1.25  # time per clip at the largest N within 25 % of the smallest N counts as flat


def _floor_reference(files: list[str]) -> float:
    result = run_workers([{"kind": "featurize", "impls": ["floor"], "files": files, "cpu": 0, "rounds": 1}])[0]
    return float(np.mean(result["times"]["_"]["floor"]))


def run(clips: Sequence[Path], sizes: Sequence[int], log: Log, jobs_list: Sequence[int] = (1, 2)) -> dict:
    sizes = sorted(sizes)
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-scaling-") as tmp:
        tmp = Path(tmp)
        log(f"scaling: writing {sizes[-1]} distinct files from {len(clips)} real clips")
        files = [str(p) for p in distinct_copies(list(clips), sizes[-1], tmp / "audio")]
        ref_files = files[: min(len(files), 50)]
        floor_before = _floor_reference(ref_files)
        rows = []
        for n in sizes:
            for jobs in jobs_list:
                log(f"scaling: {n} clips, {jobs} worker process(es)")
                task = {"kind": "scaling", "files": files[:n], "jobs": jobs, "cache": str(tmp / f"cache-{n}-{jobs}")}
                r = run_workers([task])[0]
                rows.append({
                    "n": n,
                    "jobs": jobs,
                    "seconds": r["seconds"],
                    "ms_per_clip": 1000 * r["seconds"] / n,
                    "clips_per_s": n / r["seconds"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "peak_pss_mb": r["peak_pss_mb"],
                    "computed": r["computed"],
                    "cached": r["cached"],
                    "failed": r["failed"],
                })
        floor_after = _floor_reference(ref_files)
    by = {(r["n"], r["jobs"]): r for r in rows}
    small, large = sizes[0], sizes[-1]
    flatness = {str(j): ratio(by[(large, j)]["ms_per_clip"], by[(small, j)]["ms_per_clip"]) for j in jobs_list}
    speedup = {str(n): ratio(by[(n, 1)]["seconds"], by[(n, 2)]["seconds"]) for n in sizes} if 1 in jobs_list and 2 in jobs_list else {}
    floor_ms = 1000 * (floor_before + floor_after) / 2
    for r in rows:
        r["vs_floor_1core"] = ratio(floor_ms, r["ms_per_clip"])  # our clips/s over the floor's one-core clips/s
    mem_slope = {}
    for j in jobs_list:
        if len(sizes) > 1:
            xs = np.array(sizes, float)
            ys = np.array([by[(n, j)]["peak_pss_mb"] for n in sizes])
            mem_slope[str(j)] = float(np.polyfit(xs, ys, 1)[0])
    linear, marginal = {}, {}
    for j in jobs_list:
        fit = linear_fit(sizes, [by[(n, j)]["seconds"] for n in sizes])
        if fit is not None:
            linear[str(j)] = {"fixed_s": fit["fixed_s"], "ms_per_clip": fit["ms_per_track"], "max_relative_residual": fit["max_relative_residual"]}
            steps = fit["marginal_ms_per_track"]
            marginal[str(j)] = {"ms_per_clip": steps, "last_vs_first": ratio(steps[-1], steps[0])}
    worst_flat = max(v for v in flatness.values() if v is not None)
    return {
        "sizes": sizes,
        "rows": rows,
        "reference": {"floor_ms_per_clip_before": 1000 * floor_before, "floor_ms_per_clip_after": 1000 * floor_after, "files": len(ref_files)},
        "ratios": {"time_per_clip_largest_vs_smallest": flatness, "speedup_2_vs_1_workers": speedup},
        "linear_fit": linear,  # total seconds = fixed_s + ms_per_clip * N / 1000 (worker start-up, imports: the fixed part)
        "marginal": marginal,  # ms per added clip between consecutive sizes
        "memory_mb_per_clip": mem_slope,  # slope of peak PSS over N
        "goals": {
            "flat": goal(
                f"time per clip flat from N={small} to N={large} (within {FLAT_TOLERANCE}x; worst {worst_flat:.2f}x)",
                worst_flat <= FLAT_TOLERANCE,
            ),
        },
    }
