"""The default set's groups read from its own metadata: confound rows to stand beside the models.

Each clip of the default set was rendered with its group's instruments, and only 3 groups have lyrics,
so the manifest alone partitions the clips nearly by group, with no model and no audio (issue 13). This
scores three such partitions against the groups, as ``evaluate`` scores a clustering, and writes them as
a results file (``docs/results/natural_confounds.json``) that ``python -m musiclust report`` renders
beside the models' table:

* the instrument set of each clip (the ``instrumentation`` column's MIDI programs, as a set);
* its main instrument (the program most of its parts play) plus its lyrics' language, where it has lyrics;
* whether it has lyrics at all (what the hybrid join's "no words" axis adds).

    python scripts/experiments/metadata_confounds.py [--manifest data/manifest.csv]

Deterministic: no seed, no model. The data summary is the one ``evaluate --data default`` records.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def partitions(manifest: pd.DataFrame) -> dict[str, tuple[pd.Series, str]]:
    """Name -> (one cell label per clip, what the cells are)."""
    programs = manifest["instrumentation"].fillna("").astype(str).str.split(";")
    has_lyrics = manifest["lyrics"].fillna("").astype(str).str.strip() != ""
    language = manifest["lyrics_language"].where(has_lyrics, "none").fillna("none")
    main = programs.apply(lambda parts: max(sorted(set(parts)), key=parts.count))
    return {
        "confound:instrument_set": (programs.apply(lambda parts: ";".join(sorted(set(parts)))), "the clip's instrument set"),
        "confound:instrument+language": (main + "|" + language, "main instrument and lyrics' language"),
        "confound:has_lyrics": (has_lyrics.map({True: "lyrics", False: "none"}), "has lyrics or not"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "data" / "manifest.csv")
    parser.add_argument("--results-dir", type=Path, default=REPO / "docs" / "results")
    args = parser.parse_args(argv)
    from musiclust.analysis.metrics import external_scores
    from musiclust.analysis.results import DataSummary, build_record, git_state, save_results
    from musiclust.data.collection import load_collection
    from musiclust.store.table import featurize

    started, code = time.perf_counter(), git_state()
    table = featurize(load_collection("default", groups="auto"), jobs=2)  # the tracks evaluate scores
    manifest = pd.read_csv(args.manifest).set_index("id")
    ids = [t.id for t in table.tracks]
    groups = [str(g) for g in table.groups]
    rows = []
    for name, (cells, what) in partitions(manifest.reset_index()).items():
        cells = cells.set_axis(manifest.index).loc[ids]
        scores = external_scores(groups, cells.tolist())
        rows.append({"model": name, "seed": 0, **scores, "conditioned_on_label": False,
                     "note": f"metadata, no model: {what}, {cells.nunique()} cells"})
        print(name, {k: round(v, 3) for k, v in scores.items()}, file=sys.stderr)
    # no seeds and no k: nothing here is random or clustered (the table's provenance then names neither)
    record = build_record(rows, name="natural_confounds", data=DataSummary.of_table("default", table), seeds=[],
                          k=0, settings={}, command="python scripts/experiments/metadata_confounds.py",
                          seconds=time.perf_counter() - started, code_state=code)
    print(f"wrote {save_results(record, args.results_dir)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
