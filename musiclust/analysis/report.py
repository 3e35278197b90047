"""Markdown results tables rendered from results files, written between markers in the docs.

A document asks for a table with a pair of HTML comments, invisible on GitHub, each on a line of
its own::

    <!-- results:natural metrics=ari,nmi provenance=short -->
    (everything here is replaced by the rendered table)
    <!-- /results:natural -->

``natural`` names ``docs/results/natural.json`` (:mod:`musiclust.analysis.results`). Options:
``metrics`` (default: silhouette, ARI, NMI, purity) and ``provenance=short`` (what, when and the
commit only; the default ``full`` adds machine, command and the file's notes). Rendering is a pure function of the file, so
running it twice changes nothing, and ``--check`` tells CI whether a document is stale. Each table
opens with where its numbers come from (commit, date, machine, command, seeds), and a file that was
transcribed by hand says so instead of passing for a generated one.

Bold marks the best mean of each label score (ARI, NMI, purity) among rows that are comparable:
not conditioned on the label they are scored against, and scored on every track.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from musiclust import paths
from musiclust.analysis.metrics import EXTERNAL, HELDOUT, HIGHER_IS_BETTER, METRICS
from musiclust.analysis.results import EXTRA_SCORES, MEASURED, load_results
from musiclust.errors import DataError, ParameterError

DEFAULT_METRICS = ("silhouette", "ari", "nmi", "purity")
# the scores bold can mark: higher is better, against the groups (of every track, or of the held-out ones)
LABEL_SCORES = EXTERNAL + HELDOUT
HEADERS = {
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski-Harabasz",
    "davies_bouldin": "Davies-Bouldin",
    "ari": "ARI",
    "nmi": "NMI",
    "purity": "purity",
    "reconstruction_mse_db": "reconstruction MSE (dB²)",
    "heldout_ari": "held-out ARI",
    "heldout_nmi": "held-out NMI",
    "heldout_purity": "held-out purity",
}
CONDITIONED_NOTE = "**conditioned on the group label it is scored against**"
BEST_NOTE = "best unconditioned row"
CONFOUND = "confound:"  # a row that partitions by metadata, not music: stated beside the models, never bold or best

# A marker stands on a line of its own, so prose that quotes one (in backticks) is left alone.
_MARKER = re.compile(
    r"^(?P<open><!-- results:(?P<name>[A-Za-z0-9._-]+)(?P<options>(?: +[a-z_]+=[^\s>]+)*) *-->)[ \t]*$"
    r"(?P<body>.*?)"
    r"^(?P<close><!-- /results:(?P=name) -->)[ \t]*$",
    re.S | re.M,
)
_OPENING = re.compile(r"^<!-- results:([^\s>]*)", re.M)


def _cell(score: Optional[dict], bold: bool = False) -> str:
    if not score or score.get("mean") is None or not math.isfinite(score["mean"]):
        return "–"
    std = score.get("std")
    text = f"{score['mean']:.3f}" if std is None or score.get("seeds") == 1 else f"{score['mean']:.3f} ± {std:.3f}"
    return f"**{text}**" if bold else text


def _comparable(row: dict, tracks: int) -> bool:
    return (not row.get("conditioned_on_label") and not row["model"].startswith(CONFOUND)
            and row.get("n_tracks") in (None, tracks))


def _best(rows: list[dict], metric: str, tracks: int) -> Optional[str]:
    """Model of the best comparable mean of ``metric``, or None when fewer than two rows compare."""
    scored = [(r["metrics"][metric]["mean"], r["model"]) for r in rows if _comparable(r, tracks) and metric in r["metrics"]]
    if len(scored) < 2:
        return None
    pick = max if HIGHER_IS_BETTER.get(metric, True) else min
    return pick(scored)[1]


def _notes(row: dict, tracks: int, best_nmi: Optional[str]) -> str:
    notes = [row["note"]] if row.get("note") else []
    if row.get("n_tracks") not in (None, tracks):
        notes.append(f"scored on its {row['n_tracks']} of {tracks} tracks")
    if row["model"] == best_nmi:
        notes.append(BEST_NOTE)
    if row.get("conditioned_on_label"):
        notes.append(CONDITIONED_NOTE)
    return "; ".join(notes)


def _seeds(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) == 1:
        return f"one seed ({seeds[0]})"
    return f"mean ± std over {len(seeds)} seeds ({', '.join(str(s) for s in seeds)})"


def provenance(record: dict, short: bool = False) -> str:
    """One paragraph: what was measured, on what, when, where and how; transcribed files say so.
    ``short`` keeps what, when and the commit (the README's first screen), and drops machine, command
    and notes, which the full form in docs/ gives."""
    data, machine = record["data"], record.get("machine") or {}
    what = f"`{record['name']}`: {data['tracks']} tracks"
    if data.get("groups"):
        what += f", {data['groups']} groups"
    if data.get("with_lyrics") is not None:
        what += f" ({data['with_lyrics']} with lyrics)"
    method = (record.get("settings") or {}).get("cluster_method", "kmeans").replace("kmeans", "k-means")
    if record.get("k"):
        what += f", k = {record['k']}, {method}"
    if record.get("seeds"):
        what += f"; {_seeds(record['seeds'])}"
    commit = (record.get("commit") or "unknown")[:7]
    if record.get("dirty"):
        commit += " with uncommitted changes"
    where = machine.get("description") or ", ".join(
        str(x) for x in (machine.get("cpu"), f"{machine['cores']} cores" if machine.get("cores") else None, machine.get("os")) if x
    )
    load = ""
    if machine.get("load_average_start") is not None and machine.get("load_average_end") is not None:
        load = f", load average {machine['load_average_start']:g} → {machine['load_average_end']:g}"
    kernels = machine.get("kernels") or {}
    if kernels:  # which CPU kernels the math libraries picked (they can change a seed's scores)
        load += "; kernels: " + ", ".join(
            [f"OpenBLAS {a}" for a in kernels.get("openblas", [])]
            + ([f"torch {kernels['torch_cpu_capability']}"] if kernels.get("torch_cpu_capability") else [])
            + [f"{name}={value}" for name, value in (kernels.get("switches") or {}).items()])
    run = f"`{record['command']}`"
    if record.get("seconds"):
        run += f", {record['seconds'] / 60:.1f} min"
    when = f"{record['date'][:10]} at commit {commit}"
    if not short:
        when += f" on {where or 'an unrecorded machine'}{load}; {run}"
    if record["source"] == MEASURED:
        text = f"{what}. Measured {when}."
    else:
        text = (f"{what}. **Typed in, not generated** ({record['source']}): measured {when}. To be regenerated:"
                f" `{record['command'].removesuffix(' --save')} --save`, then `python -m musiclust report`.")
    for note in () if short else record.get("notes") or ():
        text += f" {note}"
    return f"_{text}_ Source: `docs/results/{record['name']}.json`."


def render_table(record: dict, metrics: Sequence[str] = DEFAULT_METRICS, short: bool = False) -> str:
    """The provenance paragraph (``short``: see :func:`provenance`), a blank line and the markdown
    table of one results file."""
    unknown = [m for m in metrics if m not in METRICS + EXTRA_SCORES]
    if unknown:
        raise ParameterError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS + EXTRA_SCORES)}")
    rows, tracks = record["rows"], record["data"]["tracks"]
    best = {m: _best(rows, m, tracks) for m in metrics if m in LABEL_SCORES}
    best_nmi = _best(rows, "nmi", tracks)
    lines = [
        provenance(record, short),
        "",
        "| model | " + " | ".join(HEADERS.get(m, m) for m in metrics) + " | note |",
        "|---|" + "---|" * len(metrics) + "---|",
    ]
    for row in rows:
        cells = [_cell(row["metrics"].get(m), best.get(m) == row["model"]) for m in metrics]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {_notes(row, tracks, best_nmi)} |")
    return "\n".join(lines)


def _options(text: str, where: str) -> dict:
    options = dict(part.split("=", 1) for part in text.split())
    unknown = set(options) - {"metrics", "provenance"}
    if unknown:
        raise ParameterError(f"{where}: unknown marker option(s) {sorted(unknown)}; the options are metrics=a,b and provenance=short|full")
    if options.get("provenance", "full") not in ("short", "full"):
        raise ParameterError(f"{where}: provenance must be short or full, got {options['provenance']!r}")
    return options


def update_markdown(text: str, load: Callable[[str], dict], where: str = "the document") -> str:
    """``text`` with every marked block replaced by its freshly rendered table (idempotent)."""
    matches = list(_MARKER.finditer(text))
    opened = _OPENING.findall(text)
    if len(opened) != len(matches):
        closed = {m.group("name") for m in matches}
        stray = sorted(set(opened) - closed) or opened
        raise ParameterError(f"{where}: a results marker is not closed or is malformed: {stray} (close it with <!-- /results:NAME -->)")

    def replace(match: re.Match) -> str:
        options = _options(match.group("options"), where)
        metrics = tuple(m for m in options.get("metrics", ",".join(DEFAULT_METRICS)).split(",") if m)
        table = render_table(load(match.group("name")), metrics, short=options.get("provenance") == "short")
        return f"{match.group('open')}\n{table}\n{match.group('close')}"

    return _MARKER.sub(replace, text)


def default_documents(root: Path = paths.REPO_ROOT) -> list[Path]:
    """README.md and every markdown file under docs/."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").rglob("*.md"))


def update_documents(documents: Iterable[Path], results_dir: Path = paths.RESULTS_DIR, check: bool = False) -> list[Path]:
    """Re-render every marked table in ``documents``; returns the documents that changed (or, with
    ``check``, that would change: nothing is written then)."""
    cache: dict[str, dict] = {}

    def load(name: str) -> dict:
        if name not in cache:
            cache[name] = load_results(name, results_dir)
        return cache[name]

    changed = []
    for path in documents:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        new = update_markdown(text, load, str(path))
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed
