"""Markdown tables from the experiment results in docs/results/ (generated, never typed in).

    python scripts/experiments/tables.py [docs/results/ksweep_criteria.json ...] [docs/results/excerpt_policy_real.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def ksweep_table(record: dict) -> str:
    sets = record["sets"]
    criteria = list(sets[0]["chosen"])
    lines = [
        f"k chosen by each criterion (commit {record['commit'][:7]}, {record['date']}); true k in bold column",
        "",
        "| set | role | space | N | **true k** | " + " | ".join(criteria) + " |",
        "|---|---|---|---|---|" + "---|" * len(criteria),
    ]
    for s in sets:
        lines.append(
            f"| {s['set']} | {s['role']} | {s['space']} | {s['n_tracks']} | **{s['true_k']}** | "
            + " | ".join(str(s["chosen"][c]) for c in criteria) + " |"
        )
    for role, rows in (record.get("summary") or {}).items():
        lines.append(f"| **{role}: exact / mean abs. error** | | | | | "
                     + " | ".join(f"{v['exact']}/{v['sets']} · {v['mean_abs_error']:.2f}" for v in rows.values()) + " |")
    return "\n".join(lines)


def excerpt_table(record: dict) -> str:
    policies = record["policies"]
    rows = list(next(iter(policies.values()))["rows"])
    lines = [
        f"{record['data']['folder']}: {record['data']['tracks']} tracks, {len(record['data']['groups'])} groups; "
        "NMI mean ± std over seeds (n), k = true number of groups",
        "",
        "| policy | " + " | ".join(rows) + " | 1-NN acc. MFCC | 1-NN acc. PCA |",
        "|---|" + "---|" * (len(rows) + 2),
    ]
    for name, p in policies.items():
        cells = [f"{p['rows'][r]['nmi_mean']:.3f} ± {p['rows'][r]['nmi_std']:.3f} ({len(p['rows'][r]['per_seed'])})" if r in p["rows"] else "–" for r in rows]
        knn = p.get("loo_1nn_accuracy", {})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {knn.get('mfcc', {}).get('mean', float('nan')):.3f} | "
                     f"{knn.get('pca', {}).get('mean', float('nan')):.3f} |")
    return "\n".join(lines)


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted(RESULTS.glob("*.json"))
    for path in files:
        record = json.loads(path.read_text(encoding="utf-8"))
        print(f"### {path.name}\n")
        print(ksweep_table(record) if "sets" in record else excerpt_table(record))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
