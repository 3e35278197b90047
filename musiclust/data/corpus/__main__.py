"""``python -m musiclust.data.corpus manifest|render [--variant V] [--jobs N]``: the default set's maintenance.

``manifest`` re-runs the selection rule and rewrites ``data/manifest.csv`` (~2 min); ``render``
renders the clips that are missing (``python -m musiclust data`` does the same for users).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from musiclust.data.corpus.build import DEFAULT_EVENT_CACHE, DEFAULT_ROOT, build_default_set
from musiclust.data.corpus.manifest import build_manifest, write_manifest
from musiclust.data.corpus.render import VARIANTS
from musiclust.errors import MusiclustError
from musiclust.paths import DEFAULT_MANIFEST


def _main(argv: Optional[list[str]] = None) -> int:
    """``python -m musiclust.data.corpus manifest|render [--variant V] [--jobs N]`` (maintenance)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m musiclust.data.corpus", description="Maintain the default data set: its manifest and its rendered clips.")
    parser.add_argument("command", choices=("manifest", "render"))
    parser.add_argument("--variant", choices=VARIANTS, default="natural")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_EVENT_CACHE)
    args = parser.parse_args(argv)
    try:
        if args.command == "manifest":
            skipped: dict[str, str] = {}
            started = time.perf_counter()
            rows = write_manifest(args.manifest, build_manifest(skipped=skipped, log=print))
            print(f"{len(rows)} rows -> {args.manifest} in {time.perf_counter() - started:.0f} s; {len(skipped)} candidates skipped")
            for piece, reason in sorted(skipped.items()):
                print(f"  skipped {piece}: {reason}")
        else:
            report = build_default_set(args.root, args.variant, args.jobs, manifest=args.manifest, cache_dir=args.cache_dir)
            print(report.summary())
            return 0 if report.ok else 1
    except MusiclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
