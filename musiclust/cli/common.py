"""What the commands share: worker count, loading the collection a command names, model names, settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from musiclust.errors import ParameterError


def worker_count(value: Optional[int]) -> int:
    return value or max(1, min(2, os.cpu_count() or 1))


def load_table(args):
    """The featurized collection of ``--data``, grouped as ``--groups`` says.

    The command line trusts its user (a person at a shell can read these files anyway), so it reads
    any path; a run the app started (``--status-file``) reads only under the library roots, as the app does.
    """
    from musiclust.data.collection import load_collection
    from musiclust.data.roots import library_roots
    from musiclust.store.table import featurize

    spec, jobs, store = args.data, worker_count(args.jobs), args.features
    roots = library_roots() if getattr(args, "status_file", None) else None
    groups = "column" if args.group_column and args.groups == "auto" else args.groups
    collection = load_collection(spec, groups=groups, column=args.group_column, roots=roots)
    print(f"groups: {collection.group_source}" + (f" ({collection.group_reason})" if collection.group_reason else ""), file=sys.stderr)
    if store:  # features a `features` run (Dask) wrote; mels stay in the shards (musiclust.store.shards)
        from musiclust.store.stored_table import table_from_store

        table = table_from_store(collection, Path(store))
    else:
        table = featurize(collection, jobs=jobs)
    if table.skipped:
        print(f"skipped {len(table.skipped)} file(s):", file=sys.stderr)
        for path, reason in list(table.skipped.items())[:20]:
            print(f"  {Path(path).name}: {reason}", file=sys.stderr)
    return table


def model_names(value: str, allowed: tuple, every: tuple = None) -> list[str]:
    """``--models``: comma-separated names of ``allowed``, or ``all`` for ``every`` (default: ``allowed``)."""
    names = list(allowed if every is None else every) if value == "all" else [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ParameterError(f"unknown model name(s) {unknown or value!r}; choose from: {', '.join(allowed)} or all")
    return names


def settings_from(args):
    from musiclust.pipeline import Settings

    return Settings(latent_dim=args.latent_dim, beta=args.beta, k=args.k, seed=args.seed, epochs=args.epochs)
