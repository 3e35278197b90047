"""``data``, ``features``, ``predict`` and ``bench``: render the default set, featurize at scale,
place one file, run the benchmark."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from musiclust import paths
from musiclust.errors import MusiclustError, ParameterError
from musiclust.cli.common import worker_count


def cmd_data(args) -> int:
    """Render the default data set (only clips that are missing)."""
    from musiclust.data import corpus

    for variant in args.variant:
        started = time.perf_counter()
        report = corpus.build_default_set(Path(args.root), variant=variant, jobs=worker_count(args.jobs))
        print(f"{report.summary()} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


def cmd_features(args) -> int:
    """Featurize a collection into the sharded store on Dask (a LocalCluster, or --scheduler's cluster)."""
    from musiclust.data.collection import load_collection
    from musiclust.store.distributed import featurize_to_store

    if args.partition_size < 1:
        raise ParameterError(f"--partition-size must be at least 1, got {args.partition_size}")
    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {args.workers}")
    collection = load_collection(args.data)
    report = featurize_to_store([t.path for t in collection.tracks], Path(args.store), scheduler=args.scheduler,
                                workers=args.workers, partition_size=args.partition_size)
    for path, reason in list(report.failed.items())[:20]:
        print(f"  skipped {Path(path).name}: {reason}", file=sys.stderr)
    print(f"{report.featurized} track(s) featurized into {report.shards_written} shard(s), {len(report.failed)} failed, "
          f"{report.already} already in {args.store} ({report.seconds:.1f} s)", file=sys.stderr)
    if report.lost_partitions:
        key, why = next(iter(report.lost_partitions.items()))
        raise MusiclustError(f"{len(report.lost_partitions)} partition(s) could not be written (first: {key}: {why}); "
                             "run the same command again to resume")
    return 0


def cmd_predict(args) -> int:
    """Cluster, map position and neighbours of one audio file."""
    from musiclust.features.audio import audio_info
    from musiclust.models.registry import DEFAULT_MODEL
    from musiclust.service import Service

    audio_info(args.file)  # a missing, empty or undecodable file is refused before a model is loaded (seconds)
    model = args.model or DEFAULT_MODEL
    lyrics = None
    if args.lyrics:
        try:
            lyrics = Path(args.lyrics).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ParameterError(f"cannot read lyrics file {args.lyrics}: {exc.strerror or exc}") from None
    service = Service(args.data, Path(args.checkpoints))
    answer = service.analyse(model, Path(args.file), lyrics)
    p = answer.placement
    result = {
        "model": model,
        "cluster": p.cluster,
        "coords": [p.coords[0], p.coords[1]],
        "distance_to_centre": p.distance_to_centre,
        "used_lyrics": p.used_lyrics,
        "neighbours": [{"id": n.id, "title": n.title, "distance": n.distance} for n in p.neighbours],
    }
    if args.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print(f"cluster {p.cluster} (distance to centre {p.distance_to_centre:.2f}), map position ({p.coords[0]:.2f}, {p.coords[1]:.2f})")
        for n in p.neighbours:
            print(f"  {n.distance:6.2f}  {n.title}  [{n.id}]")
    return 0


def bench_runner():
    """The benchmark lives in the source checkout's ``bench/`` folder, outside the installable package."""
    if not (paths.REPO_ROOT / "bench" / "run.py").is_file():
        return None
    if str(paths.REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(paths.REPO_ROOT))
    import bench.run

    return bench.run


def cmd_bench(args) -> int:
    """The benchmark (figures beside same-run references): see :mod:`bench.run`."""
    runner = bench_runner()
    if runner is None:
        raise ParameterError("the benchmark runs from a source checkout (its bench/ folder is not installed)")
    return runner.run_from_args(args)
