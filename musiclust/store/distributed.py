"""Featurization on dask.distributed: a library split into partitions, one shard per task.

``python -m musiclust features --data DIR|CSV [--scheduler ADDRESS] [--workers N]`` calls
:func:`featurize_to_store`. Without a scheduler it starts a ``LocalCluster`` of worker *processes*
(one thread each: featurization is CPU-bound numpy/scipy that holds the GIL part of the time), sized to
the machine; with one it uses the user's cluster, whose workers need only the musiclust package and
the same view of the audio files and of the store directory (shared storage).

Dask does the scheduling, the retries and the bookkeeping of lost workers; musiclust contributes the
deterministic plan (:func:`musiclust.store.shards.partitions`) and a task body that never raises for a bad
file (it is recorded in the shard's ``failed.json``) and writes its shard atomically, so a task that
runs again after its worker died simply produces the same shard.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from musiclust.store import shards
from musiclust.config import FeatureConfig
from musiclust.errors import DataError, MusiclustError, ParameterError

DEFAULT_PARTITION = 64  # tracks per task/shard: ~1-3 s of work, ~40 MB of features held by a worker at once
TASK_RETRIES = 2  # a task whose *code* raised (e.g. the store's disk was full) is tried this many more times
# Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ).
# Setting any glibc malloc tunable turns off glibc's dynamic mmap threshold, so every large numpy temporary
# of the feature code becomes a fresh mmap + page faults + munmap: the task body ran 1.9x slower with it
# (benchmark figure 7; 44.2 vs 23.3 ms a track). The local cluster starts its workers without it. Workers
# of a user's own cluster get the same by this key in their Dask config (README, Large libraries).
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def featurize_partition(root: str, config: dict, key: str, stamps: list) -> dict:
    """Dask task: featurize one partition of files and write it as shard ``key`` of the store at ``root``.

    ``stamps`` are ``(path, size, mtime_ns)`` triples as planned on the client. A file that cannot be
    decoded (or has vanished) is recorded in the shard's failures with the reason; the task itself only
    fails on a fault of the store (then Dask retries it). Returns a small summary for the progress bar.
    """
    from musiclust.features.mel import compute_features, content_hash
    from musiclust.errors import MusiclustError as _Error

    started = time.perf_counter()
    cfg = FeatureConfig.from_dict(config)
    content = shards.ShardContent()
    for path, size, mtime_ns in stamps:
        try:
            digest = content_hash(Path(path))
            feats = compute_features(Path(path), cfg)
        except _Error as exc:
            content.failed[path] = {"reason": str(exc), "size": size, "mtime_ns": mtime_ns}
            continue
        except OSError as exc:
            content.failed[path] = {"reason": f"{Path(path).name} could not be read: {exc.strerror or exc}", "size": size, "mtime_ns": mtime_ns}
            continue
        content.mels.append(feats.mel_db)  # (n_mels, T)
        content.mfcc.append(feats.mfcc_stats)  # (4 * n_mfcc,)
        content.durations.append(feats.duration)
        content.tracks.append({"path": path, "sha256": digest, "size": size, "mtime_ns": mtime_ns})
    meta = {"worker": f"{socket.gethostname()}:{os.getpid()}", "seconds": time.perf_counter() - started}
    directory = shards.write_shard(Path(root), key, content, cfg, meta)
    return {"key": key, "shard": directory.name, "done": len(content.tracks), "failed": len(content.failed),
            "tracks": len(stamps), "seconds": meta["seconds"], "worker": meta["worker"]}


@dataclass
class Plan:
    """What a run will do: the partitions still to featurize, and what is already in the store."""

    partitions: list  # (key, [FileStamp, ...])
    already: int  # tracks (or recorded failures) of this collection already in the store
    unreadable: dict = field(default_factory=dict)  # path -> reason (could not even be stat'ed)
    damaged: dict = field(default_factory=dict)  # damaged shard -> reason (set aside; its tracks redone)

    @property
    def todo(self) -> int:
        return sum(len(p) for _, p in self.partitions)


def plan(paths: Sequence[Path], root: Path, config: FeatureConfig, partition_size: int = DEFAULT_PARTITION) -> Plan:
    """Read the store's indexes and partition the paths that are not featurized yet (in this version).

    Costs one ``stat`` per file and one small JSON read per shard: no audio is read on the client.
    """
    shards.init_store(root, config)
    _, catalog = shards.open_store(root, config)
    if catalog.damaged:  # never trusted, never overwritten: moved aside, its tracks featurized again
        shards.set_aside_damaged(root, catalog.damaged)
    todo, already, unreadable = [], 0, {}
    for path in dict.fromkeys(str(Path(p)) for p in paths):  # each path once, in order
        try:
            stamp = shards.FileStamp.of(Path(path))
        except OSError as exc:
            unreadable[path] = f"{Path(path).name} could not be read: {exc.strerror or exc}"
            continue
        if catalog.stamp_done(stamp):
            already += 1
        else:
            todo.append(stamp)
    return Plan(shards.partitions(todo, partition_size), already, unreadable, catalog.damaged)


@dataclass
class RunReport:
    """What a run did, for the CLI's summary line and for tests."""

    featurized: int = 0
    failed: dict = field(default_factory=dict)  # path -> reason (this run's bad files, plus unreadable ones)
    already: int = 0
    shards_written: int = 0
    lost_partitions: dict = field(default_factory=dict)  # key -> error, for tasks that failed even after retries
    seconds: float = 0.0
    workers: int = 0
    dashboard: Optional[str] = None
    summaries: list = field(default_factory=list)


def dashboard_available() -> bool:
    """The Dask dashboard needs bokeh, which musiclust does not install (``pip install bokeh`` adds it)."""
    return importlib.util.find_spec("bokeh") is not None


def _check_workers(client, root: Path, sample: Optional[str]) -> int:
    """Fail early, with a clear message, when workers cannot import musiclust or see the store/audio."""
    def probe(store: str, audio: Optional[str]) -> dict:
        import importlib.util as iu
        import os as _os

        return {"musiclust": iu.find_spec("musiclust") is not None, "store": _os.path.isdir(store),
                "audio": audio is None or _os.path.exists(audio)}

    answers = client.run(probe, str(root), sample)
    if not answers:
        raise DataError("the Dask cluster has no workers")
    for worker, a in answers.items():
        if not a["musiclust"]:
            raise DataError(f"Dask worker {worker} cannot import musiclust: install the package on every worker")
        if not a["store"]:
            raise DataError(f"Dask worker {worker} cannot see the store {root}: it must be on storage every worker shares")
        if not a["audio"]:
            raise DataError(f"Dask worker {worker} cannot see the audio file {sample}: audio must be on shared storage")
    return len(answers)


def connect(scheduler: Optional[str], workers: Optional[int]):
    """(client, cluster or None): the user's cluster when ``scheduler`` is given, else a LocalCluster."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        if workers:
            raise ParameterError("--workers sizes a local cluster; with --scheduler the cluster's own workers are used")
        try:
            return Client(scheduler, timeout="15s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ParameterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    n = workers or max(1, os.cpu_count() or 1)
    if n < 1:
        raise ParameterError(f"--workers must be at least 1, got {n}")
    import dask

    with dask.config.set(LOCAL_WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True,
            dashboard_address=":0" if dashboard_available() else None,  # any free port; none without bokeh
        )
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def featurize_to_store(
    paths: Sequence[Path],
    root: Path,
    config: FeatureConfig = FeatureConfig(),
    scheduler: Optional[str] = None,
    workers: Optional[int] = None,
    partition_size: int = DEFAULT_PARTITION,
    client=None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    on_submitted: Optional[Callable] = None,
) -> RunReport:
    """Featurize ``paths`` into the sharded store at ``root`` on Dask; resumable and never fatal for bad files.

    ``client``: an existing :class:`dask.distributed.Client` to use as is (tests, notebooks); otherwise
    one is made by :func:`connect` and closed, with its cluster, before returning. ``on_submitted(client,
    futures)`` is called once the tasks are submitted (tests use it to kill a worker mid-run).
    """
    started = time.perf_counter()
    root = Path(root).expanduser().resolve()
    the_plan = plan(paths, root, config, partition_size)
    report = RunReport(already=the_plan.already, failed=dict(the_plan.unreadable))
    if the_plan.damaged:
        log(f"set aside {len(the_plan.damaged)} damaged shard(s); their tracks are featurized again")
    if not the_plan.partitions:
        log(f"nothing to do: {the_plan.already} track(s) already in {root}")
        report.seconds = time.perf_counter() - started
        return report
    shards.remove_leftovers(root)  # temp directories of writers killed in an earlier run
    own = client is None
    cluster = None
    try:
        if own:
            client, cluster = connect(scheduler, workers)
        sample = the_plan.partitions[0][1][0].path
        report.workers = _check_workers(client, root, sample)
        if dashboard_available():
            report.dashboard = client.dashboard_link
            log(f"Dask dashboard: {report.dashboard}")
        else:
            log("Dask dashboard off (bokeh is not installed; `pip install bokeh` to get it)")
        log(f"featurizing {the_plan.todo} track(s) in {len(the_plan.partitions)} partition(s) on {report.workers} worker(s); "
            f"{the_plan.already} already in the store")
        report_futures(client, the_plan, root, config, report, on_submitted)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    shards.remove_leftovers(root)  # copies of tasks whose worker was killed mid-write
    report.seconds = time.perf_counter() - started
    return report


def report_futures(client, the_plan: Plan, root: Path, config: FeatureConfig, report: RunReport, on_submitted) -> None:
    """Submit one task per partition and gather summaries as they finish, with a progress bar."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    cfg = config.to_dict()
    futures = [
        client.submit(featurize_partition, str(root), cfg, key, [(s.path, s.size, s.mtime_ns) for s in stamps],
                      key=f"musiclust-features-{key}", retries=TASK_RETRIES, pure=False)
        for key, stamps in the_plan.partitions
    ]
    by_key = {f.key: key for f, (key, _) in zip(futures, the_plan.partitions)}
    if on_submitted is not None:
        on_submitted(client, futures)
    bar = tqdm(total=the_plan.todo, desc="features", unit="track", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        for future in as_completed(futures):
            try:
                summary = future.result()
            except MusiclustError as exc:
                report.lost_partitions[by_key[future.key]] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a task that failed on a worker (after retries) is reported, not fatal
                report.lost_partitions[by_key[future.key]] = f"{type(exc).__name__}: {exc}"
                continue
            report.summaries.append(summary)
            report.featurized += summary["done"]
            report.shards_written += 1
            bar.update(summary["tracks"])
    finally:
        bar.close()
    for s in report.summaries:
        if s["failed"]:
            report.failed.update(_failures_of(root / s["shard"]))


def _failures_of(directory: Path) -> dict:
    import json

    try:
        return {p: r.get("reason", "") for p, r in json.loads((directory / "failed.json").read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}
