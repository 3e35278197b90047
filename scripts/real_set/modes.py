"""What each command-line mode does, from chosen soundtracks to a built folder and a printed summary:
``do_list`` (--list), ``do_build`` (the full set, with ``do_clips`` for --clips) and ``do_fixture``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from . import BuildError
from .catalog import BY_NAME, Soundtrack
from .excerpts import write_excerpts
from .judge import check_decoded, judge, kept_per_soundtrack, spread
from .output import load_cache, place_track, prepare_out, prune, row_for, save_cache, write_manifest
from .packages import apt_line, download_size, ensure_packages, package_installed
from .sources import Candidate


def print_skipped(candidates: list[Candidate]) -> None:
    skipped = [c for c in candidates if c.reason]
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for c in skipped:
            print(f"  {c.soundtrack.name}: {c.rel}: {c.reason}")


def print_table(rows: list[dict]) -> None:
    print(f"{'soundtrack':<14} {'package':<24} {'tracks':>6} {'minutes':>8}  licence")
    for name in sorted({r["soundtrack"] for r in rows}):
        mine = [r for r in rows if r["soundtrack"] == name]
        minutes = sum(float(r["duration_s"]) for r in mine) / 60
        print(f"{name:<14} {mine[0]['package']:<24} {len(mine):>6} {minutes:>8.1f}  {BY_NAME[name].licence}")
    total = sum(float(r["duration_s"]) for r in rows) / 60
    print(f"{'total':<14} {'':<24} {len(rows):>6} {total:>8.1f}")


def do_list(soundtracks: list[Soundtrack], limit: Optional[int]) -> int:
    missing = []
    for s in soundtracks:
        installed = package_installed(s.package)
        print(f"== {s.name}: package {s.package} ({download_size(s.package)} download, "
              f"{'installed' if installed else 'NOT installed'})")
        print(f"   licence: {s.licence}; copyright {s.copyright}")
        print(f"   from: {s.root}{':' + s.member_prefix if s.member_prefix is not None else ''}")
        if s.note:
            print(f"   note: {s.note}")
        if not installed or not Path(s.root).exists():
            missing.append(s.package)
            continue
        candidates = judge([s])
        taken = {id(c) for c in kept_per_soundtrack(candidates, limit)}
        for c in candidates:
            if id(c) in taken:
                print(f"   take  {c.title}{c.ext}  ({c.info['duration']:.0f} s, {c.info['format']})")
            elif c.reason:
                print(f"   skip  {c.rel}: {c.reason}")
    if missing:
        print(f"\nnot installed; to build, first:  sudo {apt_line(sorted(set(missing)))}")
    print("\n(--list reads headers only; the build also decodes every file and skips undecodable or mostly silent ones)")
    return 0


def do_build(args, soundtracks: list[Soundtrack]) -> int:
    started = time.monotonic()
    out = Path(args.out).resolve()
    ensure_packages(soundtracks, args.install)
    prepare_out(out)
    candidates = judge(soundtracks)
    chosen = kept_per_soundtrack(candidates, args.max_per_soundtrack)
    cache, rows, wanted = load_cache(out), [], set()
    for number, candidate in enumerate(chosen, start=1):
        analysis = check_decoded(candidate, cache, number, len(chosen))
        if candidate.reason:
            continue
        rel = f"{candidate.soundtrack.name}/{candidate.title}{candidate.ext}"
        wanted.add(rel)
        place_track(out / rel, candidate, args.symlink)
        candidate.drop_data()
        rows.append(row_for(candidate, rel, candidate.sha256, analysis["duration"], 0.0, candidate.info))
    removed = prune(out, wanted)
    write_manifest(out, rows)
    save_cache(out, cache)
    if removed:
        print(f"removed {len(removed)} file(s) that this build does not hold")
    print_skipped(candidates)
    print_table(rows)
    print(f"{out}: {len(rows)} tracks, {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.0f} MB, "
          f"built in {time.monotonic() - started:.0f} s")
    if args.clips:
        do_clips(out, args, [c for c in chosen if not c.reason])
    return 0


def do_clips(out: Path, args, candidates: list[Candidate]) -> None:
    clips = Path(args.clips_out).resolve() if args.clips_out else out.with_name(f"{out.name}-clips-{args.clips:g}s")
    prepare_out(clips)
    rows, skipped = write_excerpts(clips, candidates, args.clips)
    prune(clips, {r["path"] for r in rows})
    write_manifest(clips, rows)
    print_skipped(skipped)
    print(f"{clips}: {len(rows)} clips of {args.clips:g} s (FLAC, from the middle of each track)")


def do_fixture(args, soundtracks: list[Soundtrack]) -> int:
    out = Path(args.fixture).resolve()
    ensure_packages(soundtracks, args.install)
    prepare_out(out)
    candidates = judge(soundtracks)
    rows, skipped = [], []
    for soundtrack in soundtracks:
        kept = [c for c in candidates if c.soundtrack is soundtrack and not c.reason]
        mine, problems = write_excerpts(out, spread(kept, args.per_soundtrack), args.seconds)
        rows.extend(mine)
        skipped.extend(problems)
        if len(mine) < args.per_soundtrack:
            raise BuildError(f"{soundtrack.name}: only {len(mine)} usable tracks for {args.per_soundtrack} excerpts")
    prune(out, {r["path"] for r in rows})
    write_manifest(out, rows)
    print_skipped(skipped)
    print(f"{out}: {len(rows)} excerpts of {args.seconds:g} s from {', '.join(s.name for s in soundtracks)}")
    return 0
