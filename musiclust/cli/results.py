"""``evaluate`` and ``report``: every model beside its baselines over seeds, the results file
(``docs/results/<name>.json``) and the tables rendered from it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from musiclust.cli.common import model_names, settings_from, load_table


def cmd_evaluate(args) -> int:
    """Every model beside its baselines, mean ± std over seeds."""
    from musiclust.serving import checkpoint as ckpt
    from musiclust.analysis.evaluation import ALL_NAMES, evaluate, to_records
    from musiclust.service import dataset_slug

    names = model_names(args.models, ALL_NAMES)
    results_name = _results_name(args) if args.save else None  # a bad name fails before minutes of training
    table = load_table(args)
    started, load_at_start = time.perf_counter(), (os.getloadavg() if hasattr(os, "getloadavg") else None)
    code = _code_state() if args.save else None  # the code that runs: a commit made meanwhile is not it
    summary, rows = evaluate(table, names, settings_from(args), seeds=args.seeds, progress=lambda m: print(m, file=sys.stderr))
    records = to_records(summary)
    if args.save:
        ckpt.save_report(Path(args.checkpoints) / dataset_slug(args.data), "evaluation", {"seeds": args.seeds, "settings": settings_from(args).__dict__, "rows": rows})
        _save_results(args, results_name, table, rows, summary.attrs["k"], time.perf_counter() - started, load_at_start, code)
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
    parts += [f"--{flag} {value}" for flag, value in (("groups", None if args.groups == "auto" else args.groups),
              ("group-column", args.group_column), ("epochs", args.epochs), ("k", args.k), ("features", args.features),
              ("results-name", args.results_name)) if value is not None]
    return " ".join(parts + ["--save"])


def _results_name(args) -> str:
    from musiclust.analysis.results import check_name, results_name

    return check_name(args.results_name or results_name(args.data), "--results-name")


def _code_state():
    from musiclust.analysis.results import git_state

    return git_state()


def _save_results(args, name: str, table, rows: list[dict], k, seconds: float, load_at_start, code) -> None:
    """``evaluate --save``: the run's results file (commit, machine, data, seeds, k, mean ± std) under
    ``--results-dir`` (docs/results/), from which ``report`` renders the docs' tables."""
    from musiclust.analysis.results import DataSummary, build_record, save_results

    settings = settings_from(args)
    record = build_record(
        rows,
        name=name,
        data=DataSummary.of_table(args.data, table),
        seeds=range(settings.seed, settings.seed + args.seeds),
        k=k,  # as prepare() chose it, per seed
        settings=settings.__dict__,
        command=_evaluate_command(args),
        seconds=seconds,
        load_at_start=load_at_start,
        code_state=code,
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
