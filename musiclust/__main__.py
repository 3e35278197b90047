"""Command line: ``python -m musiclust {data,features,train,evaluate,report,predict,bench}``.

Bad input to any command exits with status 2 and one line ``error: …`` on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from musiclust import paths
from musiclust.errors import MusiclustError, ParameterError



class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        raise ParameterError(message)


def _jobs(value: Optional[int]) -> int:
    return value or max(1, min(2, os.cpu_count() or 1))


def cmd_data(args) -> int:
    """Render the default data set (only clips that are missing)."""
    from musiclust.data import corpus

    for variant in args.variant:
        started = time.perf_counter()
        report = corpus.build_default_set(Path(args.root), variant=variant, jobs=_jobs(args.jobs))
        print(f"{report.summary()} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


def _table(args):
    """The featurized collection of ``--data``, grouped as ``--groups`` says.

    The command line trusts its user (a person at a shell can read these files anyway), so it reads
    any path; a run the app started (``--status-file``) reads only under the library roots, as the app does.
    """
    from musiclust.data.collection import load_collection
    from musiclust.data.roots import library_roots
    from musiclust.store.table import featurize

    spec, jobs, store = args.data, _jobs(args.jobs), args.features
    roots = library_roots() if getattr(args, "status_file", None) else None
    groups = "column" if args.group_column and args.groups == "auto" else args.groups
    collection = load_collection(spec, groups=groups, column=args.group_column, roots=roots)
    print(f"groups: {collection.group_source}" + (f" ({collection.group_reason})" if collection.group_reason else ""), file=sys.stderr)
    if store:  # features a `features` run (Dask) wrote; mels stay in the shards (musiclust.store.shards)
        from musiclust.store.shards import table_from_store

        table = table_from_store(collection, Path(store))
    else:
        table = featurize(collection, jobs=jobs)
    if table.skipped:
        print(f"skipped {len(table.skipped)} file(s):", file=sys.stderr)
        for path, reason in list(table.skipped.items())[:20]:
            print(f"  {Path(path).name}: {reason}", file=sys.stderr)
    return table




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


def _names(value: str, allowed: tuple, every: tuple) -> list[str]:
    """``--models``: comma-separated names of ``allowed``, or ``all`` for the ``every`` tuple (the defaults)."""
    names = list(every) if value == "all" else [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ParameterError(f"unknown model name(s) {unknown or value!r}; choose from: {', '.join(allowed)} or all")
    return names


def _settings(args):
    from musiclust.pipeline import Settings

    return Settings(latent_dim=args.latent_dim, beta=args.beta, k=args.k, seed=args.seed, epochs=args.epochs)


def cmd_train(args) -> int:
    """Train models and switch in the checkpoint of each one that trained (see :mod:`musiclust.publish`)."""
    from musiclust.errors import TrainingCancelled
    from musiclust.models.registry import ALL_MODELS, MODEL_NAMES
    from musiclust.publish import train_and_publish
    from musiclust.serving import checkpoint as ckpt
    from musiclust.serving.jobs import CANCELLED, FAILED, SUCCEEDED, StatusReporter
    from musiclust.service import dataset_slug

    names = _names(args.models, ALL_MODELS, MODEL_NAMES)  # an opt-in model by name; `all` = the default ones
    root = Path(args.checkpoints) / dataset_slug(args.data)
    if args.if_missing and all(n in ckpt.available(root) for n in names):
        print(f"models present in {root}; nothing to train", file=sys.stderr)
        return 0
    reporter = None
    if args.status_file:
        reporter = StatusReporter(Path(args.status_file), Path(args.cancel_file or args.status_file + ".cancel"), args.job_id or "", sys.argv[2:], len(names))
    bar = _EpochBar() if reporter is None else None
    try:
        if reporter:
            reporter.note("reading features")
        table = _table(args)
        report = train_and_publish(
            table, names, _settings(args), root, args.data,
            on_model=(reporter.model_started if reporter else bar.model),
            progress=(reporter.epoch_done if reporter else bar.epoch),
            should_stop=(reporter.should_stop if reporter else None),
        )
    except TrainingCancelled as exc:
        if reporter:
            reporter.finish(CANCELLED, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MusiclustError as exc:
        if reporter:
            reporter.finish(FAILED, f"{exc}" if "previous model" in str(exc) else f"{exc}; the previous models are still in use")
        raise
    finally:
        if bar:
            bar.close()
    _print_outcomes(report)
    summary = report.summary()
    if not report.trained:
        if reporter:
            reporter.finish(FAILED, f"{summary}; the previous models are still in use", [], report.not_trained)
        print(f"error: no model trained: {summary}", file=sys.stderr)
        return 2
    if report.not_trained:
        print(f"warning: {summary}", file=sys.stderr)
    if reporter:
        reporter.finish(SUCCEEDED, summary if report.not_trained else f"trained {', '.join(report.trained)}",
                        report.trained, report.not_trained)
    return 0


def _print_outcomes(report) -> None:
    """The run as a table on stdout: the chosen k, then one row per model (status, scores, seconds, why)."""
    from musiclust.publish import TRAINED

    print(f"k = {report.k} ({report.k_choice.get('source', '?')})")
    print(f"{'model':16s} {'status':8s} {'nmi':>6s} {'ari':>6s} {'silhouette':>10s} {'seconds':>8s}  note")
    for m in report.models:
        if m.status == TRAINED:
            nmi, ari, sil = (m.metrics.get(key, float("nan")) for key in ("nmi", "ari", "silhouette"))
            cells = f"{nmi:6.3f} {ari:6.3f} {sil:10.3f} {m.seconds:8.1f}"
        else:
            cells = f"{'-':>6s} {'-':>6s} {'-':>10s} {'-':>8s}"
        print(f"{m.name:16s} {m.status:8s} {cells}  {m.reason or m.note}")


class _EpochBar:
    """A tqdm bar per model for terminal training."""

    def __init__(self):
        self.bar = None

    def model(self, index: int, name: str) -> None:
        self.close()
        self.name = name

    def epoch(self, epoch: int, n_epochs: int, losses: dict, seconds: float) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=n_epochs, desc=self.name, unit="epoch", file=sys.stderr, disable=not sys.stderr.isatty())
        self.bar.update(epoch - self.bar.n)
        self.bar.set_postfix({k: f"{v:.1f}" for k, v in losses.items() if k in ("loss", "val_loss")})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_evaluate(args) -> int:
    """Every model beside its baselines, mean ± std over seeds."""
    from musiclust.serving import checkpoint as ckpt
    from musiclust.analysis.evaluation import ALL_NAMES, evaluate, to_records
    from musiclust.service import dataset_slug

    names = _names(args.models, ALL_NAMES, ALL_NAMES)
    results_name = _results_name(args) if args.save else None  # a bad name fails before minutes of training
    table = _table(args)
    started, load_at_start = time.perf_counter(), (os.getloadavg() if hasattr(os, "getloadavg") else None)
    summary, rows = evaluate(table, names, _settings(args), seeds=args.seeds, progress=lambda m: print(m, file=sys.stderr))
    records = to_records(summary)
    if args.save:
        ckpt.save_report(Path(args.checkpoints) / dataset_slug(args.data), "evaluation", {"seeds": args.seeds, "settings": _settings(args).__dict__, "rows": rows})
        _save_results(args, results_name, table, rows, time.perf_counter() - started, load_at_start)
    if args.format == "json":
        print(json.dumps(records, indent=1))
    elif args.format == "csv":
        print(summary.to_csv(index=False), end="")
    else:
        from musiclust.analysis.metrics import METRICS, format_mean_std

        header = f"{'model':16s}" + "".join(f"{m:>22s}" for m in METRICS) + "  conditioned"
        print(header)
        for r in records:
            cells = "".join(f"{format_mean_std(r.get(m) if r.get(m) is not None else float('nan'), r.get(m + '_std') or 0.0):>22s}" for m in METRICS)
            print(f"{r['model']:16s}{cells}  {'yes (scored against its own label)' if r['conditioned_on_label'] else ''}")
    return 0


def _evaluate_command(args) -> str:
    """The command line that reproduces this evaluation (every option that changes a score)."""
    parts = ["python -m musiclust evaluate", f"--data {args.data}", f"--models {args.models}", f"--seeds {args.seeds}",
             f"--seed {args.seed}", f"--latent-dim {args.latent_dim}", f"--beta {args.beta:g}"]
    parts += [f"--{flag} {value}" for flag, value in (("epochs", args.epochs), ("k", args.k), ("features", args.features)) if value is not None]
    return " ".join(parts + ["--save"])


def _results_name(args) -> str:
    from musiclust.analysis.results import check_name, results_name

    return check_name(args.results_name or results_name(args.data), "--results-name")


def _save_results(args, name: str, table, rows: list[dict], seconds: float, load_at_start) -> None:
    """``evaluate --save``: the run's results file (commit, machine, data, seeds, k, mean ± std) under
    ``--results-dir`` (docs/results/), from which ``report`` renders the docs' tables."""
    from musiclust.analysis.results import DataSummary, build_record, save_results

    settings = _settings(args)
    record = build_record(
        rows,
        name=name,
        data=DataSummary.of_table(args.data, table),
        seeds=range(settings.seed, settings.seed + args.seeds),
        k=settings.k or len(table.label_names()),  # as prepare() picks it
        settings=settings.__dict__,
        command=_evaluate_command(args),
        seconds=seconds,
        load_at_start=load_at_start,
    )
    path = save_results(record, Path(args.results_dir))
    print(f"results -> {path} (render the docs' tables with: python -m musiclust report)", file=sys.stderr)


def cmd_report(args) -> int:
    """Render the results tables marked in README.md and docs/ from the results files."""
    from musiclust.analysis.report import default_documents, update_documents

    documents = [Path(p) for p in args.files] or default_documents()
    changed = update_documents(documents, Path(args.results_dir), check=args.check)
    for path in changed:
        print(f"{'stale' if args.check else 'updated'}: {path}", file=sys.stderr)
    if not changed:
        print(f"{len(documents)} document(s) up to date", file=sys.stderr)
    return 1 if args.check and changed else 0


def cmd_first_run(args) -> int:
    """Render the default set and train its missing models, each saved as soon as it trained."""
    from musiclust.errors import TrainingCancelled
    from musiclust.serving.firstrun import plan, run_first_build
    from musiclust.serving.jobs import CANCELLED, FAILED, SUCCEEDED, StatusReporter

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    todo = plan(args.variant, Path(args.checkpoints))
    reporter = None
    if args.status_file:
        reporter = StatusReporter(Path(args.status_file), Path(args.cancel_file or args.status_file + ".cancel"),
                                  args.job_id or "", sys.argv[2:], len(todo.models_missing))
        reporter.clips_rendered(todo.clips_total - todo.clips_missing, todo.clips_total)
    def on_model(index: int, name: str) -> None:
        if reporter is None:
            return say(f"training {name}")
        if index == 0:
            reporter.training(len(todo.models_missing))
        reporter.model_started(index, name)

    try:
        trained = run_first_build(
            args.variant, Path(args.checkpoints), jobs=_jobs(args.jobs), epochs=args.epochs,
            on_clips=reporter.clips_rendered if reporter else (lambda done, total: None), on_model=on_model,
            on_epoch=reporter.epoch_done if reporter else None,
            should_stop=reporter.should_stop if reporter else None,
            log=say,
        )
    except TrainingCancelled as exc:
        if reporter:
            reporter.finish(CANCELLED, str(exc))
        raise
    except MusiclustError as exc:
        if reporter:
            reporter.finish(FAILED, str(exc))
        raise
    if reporter:
        reporter.finish(SUCCEEDED, f"default set ready; trained {', '.join(trained)}" if trained else "default set ready")
    return 0


def cmd_predict(args) -> int:
    """Cluster, map position and neighbours of one audio file."""
    from musiclust.models.registry import DEFAULT_MODEL
    from musiclust.service import Service

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


def _bench():
    """The benchmark lives in the source checkout's ``bench/`` folder, outside the installable package."""
    if not (paths.REPO_ROOT / "bench" / "run.py").is_file():
        return None
    if str(paths.REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(paths.REPO_ROOT))
    import bench.run

    return bench.run


def cmd_bench(args) -> int:
    """The benchmark (figures beside same-run references): see :mod:`bench.run`."""
    runner = _bench()
    if runner is None:
        raise ParameterError("the benchmark runs from a source checkout (its bench/ folder is not installed)")
    return runner.run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    from musiclust.data.collection import DEFAULT_VARIANTS, GROUP_SOURCES

    parser = _Parser(prog="musiclust", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="render the default data set from the music21 corpus")
    data.add_argument("--variant", nargs="+", default=["natural"], choices=DEFAULT_VARIANTS)
    data.add_argument("--root", default=str(paths.DEFAULT_AUDIO_ROOT))
    data.add_argument("--jobs", type=int)
    data.set_defaults(func=cmd_data)

    def common(p, models_default: str):
        p.add_argument("--data", default="default", help="default, default:piano, a music folder, or a CSV manifest")
        p.add_argument("--models", default=models_default, help="comma-separated names, or all")
        p.add_argument("--epochs", type=int, help="training epochs (default: the tuned default of the fit loop)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--latent-dim", type=int, default=32)
        p.add_argument("--beta", type=float, default=4.0)
        p.add_argument("--k", type=int, help="clusters (default: the number of groups)")
        p.add_argument("--jobs", type=int, help="feature worker processes (default: up to 2)")
        p.add_argument("--checkpoints", default=str(paths.CHECKPOINTS))
        p.add_argument("--features", metavar="STORE", help="read features from a sharded store written by `features` (no featurization)")
        p.add_argument("--groups", choices=GROUP_SOURCES, default="auto",
                       help="where groups come from: a folder's immediate sub-folders, the genre tag, a CSV column, or none "
                            "(default auto: folders when >= 2 sub-folders hold audio directly, a CSV's genre column, else none)")
        p.add_argument("--group-column", metavar="NAME", help="the CSV column that gives groups (implies --groups column; default: genre)")

    feats = sub.add_parser("features", help="featurize a collection into a sharded store on Dask (local cluster or --scheduler)")
    feats.add_argument("--data", default="default", help="default, default:piano, a music folder, or a CSV manifest")
    feats.add_argument("--store", default=str(paths.FEATURE_STORE), help="the store directory (shared storage for a remote cluster)")
    feats.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    feats.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per core)")
    feats.add_argument("--partition-size", type=int, default=64, help="tracks per task and shard (default 64)")
    feats.set_defaults(func=cmd_features)

    train = sub.add_parser("train", help="train models and save checkpoints")
    common(train, "all")
    train.add_argument("--if-missing", action="store_true", help="do nothing when the models exist")
    train.add_argument("--status-file", help=argparse.SUPPRESS)
    train.add_argument("--cancel-file", help=argparse.SUPPRESS)
    train.add_argument("--job-id", help=argparse.SUPPRESS)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score every model beside its baselines")
    common(ev, "all")
    ev.add_argument("--seeds", type=int, default=3)
    ev.add_argument("--format", choices=("table", "json", "csv"), default="table")
    ev.add_argument("--save", action="store_true", help="store the table for the app's metrics page and write a results file")
    ev.add_argument("--results-dir", default=str(paths.RESULTS_DIR), help="where --save writes the results file (default docs/results)")
    ev.add_argument("--results-name", help="the results file's name (default: natural, piano, or the collection's folder name)")
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("report", help="render the results tables in README.md and docs/ from the results files")
    rep.add_argument("files", nargs="*", help="markdown files (default: README.md and every .md under docs/)")
    rep.add_argument("--results-dir", default=str(paths.RESULTS_DIR), help="the results files (default docs/results)")
    rep.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table is stale")
    rep.set_defaults(func=cmd_report)

    first = sub.add_parser("first-run", help="render the default set and train its missing models (what the app starts)")
    first.add_argument("--variant", default="natural", choices=DEFAULT_VARIANTS)
    first.add_argument("--checkpoints", default=str(paths.CHECKPOINTS))
    first.add_argument("--epochs", type=int, help="training epochs (default: the tuned default of the fit loop)")
    first.add_argument("--jobs", type=int, help="render and feature worker processes (default: up to 2)")
    first.add_argument("--status-file", help=argparse.SUPPRESS)
    first.add_argument("--cancel-file", help=argparse.SUPPRESS)
    first.add_argument("--job-id", help=argparse.SUPPRESS)
    first.set_defaults(func=cmd_first_run)

    pr = sub.add_parser("predict", help="cluster, map position and neighbours of an audio file")
    pr.add_argument("file")
    pr.add_argument("--lyrics", help="a text file with the lyrics")
    pr.add_argument("--model", help="a model name (default: the first the app offers)")
    pr.add_argument("--data", default="default")
    pr.add_argument("--checkpoints", default=str(paths.CHECKPOINTS))
    pr.add_argument("--format", choices=("text", "json"), default="text")
    pr.set_defaults(func=cmd_predict)

    bench = sub.add_parser("bench", help="benchmark: speed and scaling beside references measured in the same run")
    runner = _bench()
    if runner is not None:
        runner.add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except MusiclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
