#!/usr/bin/env python3
"""Builds musiclust's real-recording development set from Debian game soundtracks.

The embedded default set is synthetic (MIDI through a soundfont); this one is real produced audio:
the music of free games that Debian ships in its main section. Nothing of it is committed: it is
built on the machine, from installed packages, into ``data/real/`` (see docs/real-set.md)::

    data/real/<soundtrack>/<NN title>.<ext>   full tracks, as the package ships them (Ogg Vorbis)
    data/real/MANIFEST.csv                    path, soundtrack, package, licence, duration_s, sha256, piece_id, ...

One folder per soundtrack: the folder's name is the label (musiclust's ``load_folder`` reads it as the
group). Only real audio streams are taken, from each game's music folder (never its sound effects);
tracker modules and MIDI are not recordings and are left out, and so are jingles (shorter than
MIN_TRACK_SECONDS), mostly silent files, undecodable files and byte-identical duplicates, each with
its reason.

Other modes: ``--clips SECONDS`` also cuts a fixed-length excerpt from the middle of every track into
a separate folder; ``--fixture DIR`` writes a tiny set of short excerpts from the smallest packages
for the tests; ``--list`` prints what would be built and the licences. Excerpts are FLAC: libsndfile
gives every Ogg stream a random serial number, so Ogg output would differ from build to build.

Stand-alone on purpose (numpy and soundfile only): it imports nothing from musiclust. Its parts are the
package next to it, scripts/real_set/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

try:
    import numpy as np
    import soundfile  # noqa: F401 - checked here, used by real_set
except ImportError as exc:  # run with a Python that lacks the project's requirements
    sys.exit(f"build_real_set: {exc}; run it with the project's Python (scripts/setup makes .venv)")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the script's folder is not on the path under python -P / -I or an import
    sys.path.insert(0, str(HERE))

from real_set import BuildError  # noqa: E402 - after the path is set
from real_set.catalog import BY_NAME, choose  # noqa: E402
from real_set.modes import do_build, do_fixture, do_list  # noqa: E402

REPO = HERE.parent
DEFAULT_OUT = REPO / "data" / "real"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build musiclust's real-recording development set (free game soundtracks from Debian "
        "packages) into data/real/, never committed. See docs/real-set.md.")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the full set goes (default: data/real)")
    parser.add_argument("--soundtracks", help="comma-separated names, 'default' (the default) or 'all' "
                        f"(known: {', '.join(BY_NAME)})")
    parser.add_argument("--max-per-soundtrack", type=int, metavar="N", help="take at most the first N tracks of each")
    parser.add_argument("--list", action="store_true", help="print what would be built, with the licences, and stop")
    parser.add_argument("--install", action="store_true", help="apt-get install the packages that are missing")
    parser.add_argument("--symlink", action="store_true", help="link to the installed files instead of copying them")
    parser.add_argument("--clips", type=float, metavar="SECONDS",
                        help="also cut a SECONDS-long FLAC excerpt from the middle of every track")
    parser.add_argument("--clips-out", metavar="DIR", help="where the clips go (default: <out>-clips-<SECONDS>s)")
    parser.add_argument("--fixture", metavar="DIR",
                        help="instead: write a tiny test set of short FLAC excerpts from the smallest packages")
    parser.add_argument("--per-soundtrack", type=int, default=4, help="fixture: excerpts per soundtrack (default 4)")
    parser.add_argument("--seconds", type=float, default=12.0, help="fixture: excerpt length (default 12)")
    args = parser.parse_args(argv)
    try:
        for name, value, low in (("--max-per-soundtrack", args.max_per_soundtrack, 1),
                                 ("--per-soundtrack", args.per_soundtrack, 1),
                                 ("--seconds", args.seconds, 1), ("--clips", args.clips, 1)):  # fmt: skip
            if value is not None and not (value >= low and np.isfinite(value)):
                raise BuildError(f"{name} must be at least {low}, not {value}")
        soundtracks = choose(args.soundtracks, fixture=bool(args.fixture))
        if args.list:
            return do_list(soundtracks, args.max_per_soundtrack)
        if args.fixture:
            return do_fixture(args, soundtracks)
        return do_build(args, soundtracks)
    except BuildError as exc:
        print(f"build_real_set: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
