"""Command line: ``python -m musiclust {data,features,train,evaluate,report,predict,bench}``.

Bad input to any command exits with status 2 and one line ``error: …`` on stderr, no traceback; output
into a pipe whose reader left ends quietly with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from musiclust import paths
from musiclust.errors import MusiclustError, ParameterError
from musiclust.cli.results import cmd_evaluate, cmd_report
from musiclust.cli.tools import bench_runner, cmd_bench, cmd_data, cmd_features, cmd_predict
from musiclust.cli.train import cmd_first_run, cmd_train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        raise ParameterError(message)


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
        p.add_argument("--checkpoints", default=str(paths.checkpoints_root()),
                       help="where models are kept (default: MUSICLUST_CHECKPOINTS, else checkpoints/)")
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
    first.add_argument("--checkpoints", default=str(paths.checkpoints_root()),
                       help="where models are kept (default: MUSICLUST_CHECKPOINTS, else checkpoints/)")
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
    pr.add_argument("--checkpoints", default=str(paths.checkpoints_root()),
                       help="where models are kept (default: MUSICLUST_CHECKPOINTS, else checkpoints/)")
    pr.add_argument("--format", choices=("text", "json"), default="text")
    pr.set_defaults(func=cmd_predict)

    bench = sub.add_parser("bench", help="benchmark: speed and scaling beside references measured in the same run")
    runner = bench_runner()
    if runner is not None:
        runner.add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return status
    except BrokenPipeError:  # the reader left (`… | head`): stop quietly, as a pipe's writer should
        # Python's own recipe (docs of the signal module): what is still buffered goes to /dev/null,
        # or the flush at exit raises again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MusiclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
