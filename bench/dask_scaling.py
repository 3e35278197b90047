"""Figure 7: featurization on dask.distributed — 1 and 2 workers, and time per track as the library grows.

What a user runs (``python -m musiclust features``): :func:`musiclust.store.distributed.featurize_to_store`
on a ``LocalCluster`` of worker *processes* with one thread each, into a fresh, empty store, with the
default partition of 64 tracks per task and shard. Each (N, workers) run is its own process. Inputs
are N distinct files made from the real 30 s clips, repeated with one sample nudged by one LSB per
copy (:func:`bench.common.distinct_copies`), so every file is decoded and featurized for
real and no two files are the same bytes.

Measured per run:

* **start-up**, reported apart and not counted in throughput: ``LocalCluster(...)`` + ``Client`` until
  the workers are up, then one warm-up featurization on every worker (imports, mel filter bank): what
  the first task of a fresh worker would otherwise pay;
* **throughput**: the ``featurize_to_store`` call itself (plan: one ``stat`` per file; worker checks;
  every task featurizing and writing its shard; gathering) -> tracks/s and ms per track; the workers'
  CPU seconds over the same call (``time.process_time`` on each worker) per track;
* **memory**: peak RSS (and PSS) of each worker process and of the client process (which also hosts the
  local scheduler), sampled every 50 ms during the call;
* **store size** on disk per track.

Reference, in the same run before and after the Dask runs: the same task body
(:func:`musiclust.store.distributed.featurize_partition`, shard writes included) called in one plain process
without Dask, on the first files: the per-track cost a worker cannot beat, so ``dask 1 worker /
serial`` is Dask's overhead. The reference is also run with ``MALLOC_TRIM_THRESHOLD_=65536``, which
Dask's nanny puts in every worker's environment by default, and the largest N is run once more with
that variable unset in the workers: together they say how much of the overhead is that one setting.
Goals: the 2-worker speed-up (1-worker time / 2-worker time at the same N) >= 1.8x at the largest N,
and time per track flat as N grows (largest N within 1.25x of the smallest).

Not measured: N = 100k. At ~20-60 ms of CPU per track that is 0.5-1.7 h of this 2-core machine per
run, so the figure runs N = 500 / 1,000 / 2,000 (default) and gives the per-track cost and its trend
(a linear fit ``total = fixed + N x per track``, and the marginal cost between sizes); the README's
projection to 1M tracks is made from those.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from bench.common import Log, distinct_copies, goal, linear_fit, ratio, run_workers

GOAL_SPEEDUP = 1.8
FLAT_TOLERANCE = 1.25  # as figure 6: time per track at the largest N within 25 % of the smallest N
# What Dask's nanny puts in every worker's environment by default (distributed.nanny.pre-spawn-environ).
# Setting any glibc malloc tunable switches off glibc's dynamic mmap threshold, so every large numpy
# temporary of the feature code is a fresh mmap + page faults + munmap: the figure measures what that costs.
NANNY_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "65536"}
NANNY_MALLOC_NOTE = ("dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker; "
                     "dask.config 'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null' unsets it")


# --- in the benchmark worker process (python -m bench.worker) ----------------------------
def task_files(task: dict) -> list[Path]:
    """The task's files: the first ``n`` lines of its ``file_list`` (thousands of paths do not fit in the
    worker's command line, where the task JSON travels)."""
    lines = Path(task["file_list"]).read_text(encoding="utf-8").splitlines()
    return [Path(p) for p in lines[: task.get("n", len(lines))]]


def _warm_worker(path: str) -> float:
    """Run on every Dask worker before timing: imports and the first features (filter bank, FFT plan)."""
    started = time.perf_counter()
    from musiclust.features.mel import compute_features

    compute_features(Path(path))
    return time.perf_counter() - started


def measure(task: dict, ready: Callable[[], None]) -> dict:
    """One (files, workers) run: start a LocalCluster, warm it, time ``featurize_to_store`` into a fresh store."""
    from dask.distributed import Client, LocalCluster

    from bench.memory import PeakPerProcess
    from bench.replicas import store_bytes
    from musiclust.store.distributed import featurize_to_store

    import dask

    files = task_files(task)
    store = Path(task["store"])
    # Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (its default
    # distributed.nanny.pre-spawn-environ); None unsets it, as a user's config can (see NANNY_MALLOC_NOTE).
    env = {} if task.get("dask_malloc_env", True) else {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    ready()
    t0 = time.perf_counter()
    with dask.config.set(env):
        cluster = LocalCluster(n_workers=task["workers"], threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        t1 = time.perf_counter()
        warm = client.run(_warm_worker, str(files[0]))
        t2 = time.perf_counter()
        pids = client.run(os.getpid)  # worker address -> pid
        cpu_before = client.run(time.process_time)
        with PeakPerProcess([*pids.values(), os.getpid()]) as mem:
            t3 = time.perf_counter()
            report = featurize_to_store(files, store, client=client, partition_size=task["partition_size"], log=lambda m: None)
            seconds = time.perf_counter() - t3
        cpu_after = client.run(time.process_time)
    finally:
        client.close()
        cluster.close()
    per_worker = {}
    for address, pid in pids.items():
        done = sum(s["done"] for s in report.summaries if s["worker"].endswith(f":{pid}"))
        per_worker[address] = {"tracks": done, "cpu_s": cpu_after[address] - cpu_before[address], **mem.mb(pid)}
    return {
        "seconds": seconds,
        "cluster_start_s": t1 - t0,
        "worker_warmup_s": t2 - t1,
        "worker_warmup_each_s": list(warm.values()),
        "featurized": report.featurized,
        "failed": len(report.failed),
        "lost_partitions": len(report.lost_partitions),
        "shards": report.shards_written,
        "task_seconds": [s["seconds"] for s in report.summaries],
        "workers": per_worker,
        "client": mem.mb(os.getpid()),
        "store_bytes": store_bytes(store),
        "audio_bytes": sum(p.stat().st_size for p in files),
    }


def serial_reference(task: dict, ready: Callable[[], None]) -> dict:
    """The Dask task body called in this one plain process (no Dask): ms per track, shard writes included."""
    from musiclust.store import shards
    from musiclust.config import FeatureConfig
    from musiclust.store.distributed import featurize_partition

    files = task_files(task)
    _warm_worker(str(files[0]))
    cfg = FeatureConfig()
    root = Path(task["store"])
    malloc = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    shards.init_store(root, cfg)
    stamps = [shards.FileStamp.of(p) for p in files]
    parts = shards.partitions(stamps, task["partition_size"])
    ready()
    t = time.perf_counter()
    for key, part in parts:
        featurize_partition(str(root), cfg.to_dict(), key, [(s.path, s.size, s.mtime_ns) for s in part])
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "tracks": len(stamps), "ms_per_track": 1000 * seconds / len(stamps), "malloc_trim_threshold": malloc}


# --- in the benchmark's own process ------------------------------------------------------------------
def _row(n: int, workers: int, r: dict) -> dict:
    worker_rss = [w["peak_rss_mb"] for w in r["workers"].values()]
    cpu = sum(w["cpu_s"] for w in r["workers"].values())
    return {
        "n": n,
        "workers": workers,
        "seconds": r["seconds"],
        "tracks_per_s": n / r["seconds"],
        "ms_per_track": 1000 * r["seconds"] / n,
        "worker_cpu_ms_per_track": 1000 * cpu / n,
        "cluster_start_s": r["cluster_start_s"],
        "worker_warmup_s": r["worker_warmup_s"],
        "startup_s": r["cluster_start_s"] + r["worker_warmup_s"],
        "featurized": r["featurized"],
        "failed": r["failed"],
        "lost_partitions": r["lost_partitions"],
        "shards": r["shards"],
        "task_seconds_p50": float(np.median(r["task_seconds"])) if r["task_seconds"] else None,
        "tracks_per_worker": [w["tracks"] for w in r["workers"].values()],
        "worker_peak_rss_mb": max(worker_rss),
        "worker_peak_pss_mb": max(w["peak_pss_mb"] for w in r["workers"].values()),
        "client_peak_rss_mb": r["client"]["peak_rss_mb"],
        "store_mb_per_track": r["store_bytes"] / n / 2**20,
        "audio_mb_per_track": r["audio_bytes"] / n / 2**20,
    }


def run(clips: Sequence[Path], sizes: Sequence[int], log: Log, worker_counts: Sequence[int] = (1, 2),
        partition_size: int = 64, reference_tracks: int = 128, malloc_variant: bool = True) -> dict:
    sizes = sorted(sizes)
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-dask-") as tmp:
        tmp = Path(tmp)
        log(f"dask: writing {sizes[-1]} distinct files from {len(clips)} real clips")
        files = [str(p) for p in distinct_copies(list(clips), sizes[-1], tmp / "audio")]
        listing = tmp / "files.txt"
        listing.write_text("\n".join(files) + "\n", encoding="utf-8")
        ref = {"file_list": str(listing), "n": min(reference_tracks, len(files)), "partition_size": partition_size}

        def serial(tag: str, env: Optional[dict] = None) -> dict:
            store = tmp / f"serial-{tag}"
            out = run_workers([{"kind": "dask_serial", **ref, "store": str(store)}], extra_env=env)[0]
            shutil.rmtree(store, ignore_errors=True)
            return out

        def dask_run(n: int, w: int, nanny_env: bool) -> dict:
            store = tmp / f"store-{n}-{w}-{int(nanny_env)}"
            r = run_workers([{"kind": "dask_featurize", "file_list": str(listing), "n": n, "workers": w, "store": str(store),
                              "partition_size": partition_size, "dask_malloc_env": nanny_env}])[0]
            shutil.rmtree(store, ignore_errors=True)
            return {**_row(n, w, r), "nanny_malloc_trim": nanny_env}

        log(f"dask: reference, the task body without Dask on {ref['n']} files (plain, then with the nanny's malloc setting)")
        before = serial("before")
        with_trim = serial("trim", NANNY_MALLOC_ENV)
        rows = []
        for n in sizes:
            for w in worker_counts:
                log(f"dask: {n} tracks on a LocalCluster of {w} worker(s)")
                rows.append(dask_run(n, w, True))
        variant = []
        if malloc_variant:
            for w in worker_counts:
                log(f"dask: {sizes[-1]} tracks, {w} worker(s), MALLOC_TRIM_THRESHOLD_ unset in the workers")
                variant.append(dask_run(sizes[-1], w, False))
        after = serial("after")
    by = {(r["n"], r["workers"]): r for r in rows}
    serial_ms = (before["ms_per_track"] + after["ms_per_track"]) / 2
    for r in rows + variant:
        r["worker_time_vs_serial"] = ratio(r["ms_per_track"] * r["workers"], serial_ms)  # worker-seconds per track / serial
    small, large = sizes[0], sizes[-1]
    speedup = {str(n): ratio(by[(n, 1)]["seconds"], by[(n, 2)]["seconds"]) for n in sizes} if {1, 2} <= set(worker_counts) else {}
    flat = {str(w): ratio(by[(large, w)]["ms_per_track"], by[(small, w)]["ms_per_track"]) for w in worker_counts} if len(sizes) > 1 else {}
    fits = {str(w): linear_fit(sizes, [by[(n, w)]["seconds"] for n in sizes]) for w in worker_counts}
    vby = {r["workers"]: r for r in variant}
    top = speedup.get(str(large))
    worst_flat = max((v for v in flat.values() if v is not None), default=None)
    return {
        "sizes": sizes,
        "worker_counts": list(worker_counts),
        "partition_size": partition_size,
        "rows": rows,
        "malloc_variant": variant,
        "reference": {
            "serial_ms_per_track_before": before["ms_per_track"],
            "serial_ms_per_track_after": after["ms_per_track"],
            "serial_ms_per_track_nanny_malloc_env": with_trim["ms_per_track"],
            "tracks": before["tracks"],
        },
        "ratios": {
            "speedup_2_vs_1_workers": speedup,
            "time_per_track_largest_vs_smallest": flat,
            "serial_nanny_malloc_env_vs_plain": ratio(with_trim["ms_per_track"], before["ms_per_track"]),
            "unset_vs_dask_default_speed": {str(w): ratio(by[(large, w)]["seconds"], vby[w]["seconds"]) for w in vby},
            "speedup_2_vs_1_workers_unset": ratio(vby[1]["seconds"], vby[2]["seconds"]) if {1, 2} <= set(vby) else None,
        },
        "linear_fit": fits,
        "goals": {
            "speedup": goal(f"2 workers >= {GOAL_SPEEDUP}x as fast as 1 at N={large} ({top:.2f}x)" if top else "2-worker speed-up",
                            None if top is None else top >= GOAL_SPEEDUP),
            "flat": goal(f"time per track flat from N={small} to N={large} (within {FLAT_TOLERANCE}x; worst {worst_flat:.2f}x)"
                         if worst_flat else "time per track flat (one size only: not judged)",
                         None if worst_flat is None else worst_flat <= FLAT_TOLERANCE),
        },
    }
