"""Results files and the docs' generated tables: what `evaluate --save` writes, and `report` renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musiclust.__main__ import main
from musiclust.analysis.report import default_documents, render_table, update_documents
from musiclust.analysis.results import DataSummary, build_record, load_results, save_results
from musiclust.errors import DataError, ParameterError

REPO = Path(__file__).resolve().parents[1]


def _row(model: str, seed: int, nmi: float, **extra) -> dict:
    return {"model": model, "seed": seed, "silhouette": 0.1 + seed / 10, "ari": nmi - 0.1, "nmi": nmi, "purity": nmi + 0.1,
            "conditioned_on_label": False, **extra}


@pytest.fixture
def record() -> dict:
    """Two seeds of five rows: a plain one, one conditioned on the label, one on a subset, a weaker
    one, and one that could not train."""
    per_seed = []
    for seed, (a, d) in enumerate(((0.5, 0.2), (0.7, 0.4))):
        per_seed += [
            _row("alpha", seed, a),
            _row("beta", seed, 0.9, conditioned_on_label=True),
            _row("gamma", seed, 0.95, n_tracks=5),
            _row("delta", seed, d, reconstruction_mse_db=80.0 + seed),
            {"model": "eps", "seed": seed, "note": "needs a group for every track"},
        ]
    data = DataSummary("tests/folder", tracks=10, groups=3, with_lyrics=4, fingerprint="f" * 16)
    return build_record(per_seed, name="fixture", data=data, seeds=[0, 1], k=3, settings={"cluster_method": "kmeans"},
                        command="python -m musiclust evaluate --data tests/folder --save", seconds=90.0, load_at_start=(1.0, 1.0, 1.0))


def test_a_results_file_records_where_and_how_it_was_measured(record, tmp_path):
    path = save_results(record, tmp_path)
    assert path == tmp_path / "fixture.json"
    saved = load_results("fixture", tmp_path)
    assert saved == json.loads(path.read_text(encoding="utf-8"))
    assert saved["source"] == "measured" and saved["seeds"] == [0, 1] and saved["k"] == 3
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert saved["commit"] == (commit or None) and isinstance(saved["dirty"], bool)
    assert saved["machine"]["cores"] == os.cpu_count() and saved["machine"]["cpu"] and saved["machine"]["os"]
    assert saved["date"].endswith("Z") and saved["libraries"]["numpy"]
    # the CPU kernels NumPy's OpenBLAS picked here, named in the file and in the table's provenance
    from threadpoolctl import threadpool_info

    picked = {i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas"}
    assert {k.split(" (")[0] for k in saved["machine"]["kernels"]["openblas"]} == picked
    assert f"kernels: OpenBLAS {saved['machine']['kernels']['openblas'][0]}" in render_table(saved)
    rows = {r["model"]: r for r in saved["rows"]}
    assert rows["alpha"]["metrics"]["nmi"] == pytest.approx({"mean": 0.6, "std": 0.1, "seeds": 2})
    assert rows["delta"]["metrics"]["reconstruction_mse_db"] == pytest.approx({"mean": 80.5, "std": 0.5, "seeds": 2})
    assert rows["beta"]["conditioned_on_label"] is True and rows["gamma"]["n_tracks"] == 5
    assert rows["eps"] == {"model": "eps", "conditioned_on_label": False, "metrics": {}, "note": "needs a group for every track"}
    assert len(saved["per_seed"]) == 10


def test_a_results_file_names_the_kernel_switches_a_run_was_given(monkeypatch, tmp_path):
    """A run made with a library forced to older code (scripts/experiments/kernels.py) says so: on this
    machine that alone moved a seed's NMI by up to 0.07 (docs/results/kernels.json)."""
    from musiclust.analysis.results import KERNEL_SWITCHES

    for name in KERNEL_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    data = DataSummary("tests/folder", tracks=10, groups=3, with_lyrics=0, fingerprint="f" * 16)
    plain = build_record([_row("alpha", 0, 0.5)], name="plain", data=data, seeds=[0], k=3, settings={}, command="x", seconds=1.0)
    assert "switches" not in plain["machine"].get("kernels", {}) and "MKL_CBWR" not in render_table(plain)
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    forced = build_record([_row("alpha", 0, 0.5)], name="forced", data=data, seeds=[0], k=3, settings={}, command="x", seconds=1.0)
    assert forced["machine"]["kernels"]["switches"] == {"MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
    saved = load_results("forced", save_results(forced, tmp_path).parent)
    assert "MKL_CBWR=AVX2, OPENBLAS_CORETYPE=Haswell" in render_table(saved)


def test_rendering_a_results_file_gives_the_expected_table(record):
    text = render_table(record)
    head, blank, *table = text.split("\n")
    assert blank == ""
    assert head.startswith("_`fixture`: 10 tracks, 3 groups (4 with lyrics), k = 3, k-means; mean ± std over 2 seeds (0, 1). Measured ")
    assert f"at commit {(record['commit'] or 'unknown')[:7]}" in head and f"{os.cpu_count()} cores" in head
    assert "`python -m musiclust evaluate --data tests/folder --save`, 1.5 min" in head
    assert head.endswith("Source: `docs/results/fixture.json`.")
    assert table == [
        "| model | silhouette | ARI | NMI | purity | note |",
        "|---|---|---|---|---|---|",
        "| alpha | 0.150 ± 0.050 | **0.500 ± 0.100** | **0.600 ± 0.100** | **0.700 ± 0.100** | best unconditioned row |",
        "| beta | 0.150 ± 0.050 | 0.800 ± 0.000 | 0.900 ± 0.000 | 1.000 ± 0.000 | **conditioned on the group label it is scored against** |",
        "| gamma | 0.150 ± 0.050 | 0.850 ± 0.000 | 0.950 ± 0.000 | 1.050 ± 0.000 | scored on its 5 of 10 tracks |",
        "| delta | 0.150 ± 0.050 | 0.200 ± 0.100 | 0.300 ± 0.100 | 0.400 ± 0.100 |  |",
        "| eps | – | – | – | – | needs a group for every track |",
    ]
    short = render_table(record, ("nmi", "reconstruction_mse_db"), short=True).split("\n")
    assert "cores" not in short[0] and "min" not in short[0]
    assert short[2] == "| model | NMI | reconstruction MSE (dB²) | note |"
    assert short[7] == "| delta | 0.300 ± 0.100 | 80.500 ± 0.500 |  |"


def test_a_confound_row_is_stated_beside_the_models_but_never_the_best(record):
    """A partition read from metadata (scripts/experiments/metadata_confounds.py) scores higher than any
    model here, yet bold and "best" stay with the models."""
    per_seed = record["per_seed"] + [{"model": "confound:instruments", "seed": s, "ari": 0.98, "nmi": 0.99, "purity": 1.0,
                                      "note": "metadata, no model"} for s in (0, 1)]
    data = DataSummary(**record["data"])
    with_confound = build_record(per_seed, name="fixture", data=data, seeds=[0, 1], k=3, settings=record["settings"],
                                 command=record["command"], seconds=90.0)
    rows = {line.split(" | ")[0][2:]: line for line in render_table(with_confound).split("\n") if line.startswith("| ")}
    assert rows["confound:instruments"] == "| confound:instruments | – | 0.980 ± 0.000 | 0.990 ± 0.000 | 1.000 ± 0.000 | metadata, no model |"
    assert "**0.600 ± 0.100**" in rows["alpha"] and "best unconditioned row" in rows["alpha"]


def test_a_transcribed_file_says_it_was_typed_in(record):
    typed = {**record, "source": "transcribed from README at a3bef89", "command": "python -m musiclust evaluate --seeds 3"}
    head = render_table(typed, short=True).split("\n")[0]
    assert "**Typed in, not generated** (transcribed from README at a3bef89)" in head
    assert "To be regenerated: `python -m musiclust evaluate --seeds 3 --save`, then `python -m musiclust report`." in head


DOCUMENT = """# Title

Some prose that quotes a marker, `<!-- results:fixture -->`, and is left alone.

<!-- results:fixture -->
| an old | typed-in table |
<!-- /results:fixture -->

Between the tables.

<!-- results:fixture metrics=nmi provenance=short -->
<!-- /results:fixture -->
The end.
"""


def test_markers_are_updated_in_place_and_idempotently(record, tmp_path):
    save_results(record, tmp_path)
    doc = tmp_path / "README.md"
    doc.write_text(DOCUMENT, encoding="utf-8")
    assert update_documents([doc], tmp_path, check=True) == [doc]
    assert doc.read_text(encoding="utf-8") == DOCUMENT  # --check writes nothing

    assert update_documents([doc], tmp_path) == [doc]
    first = doc.read_text(encoding="utf-8")
    expected = DOCUMENT.replace(
        "<!-- results:fixture -->\n| an old | typed-in table |\n", f"<!-- results:fixture -->\n{render_table(record)}\n"
    ).replace(
        "<!-- results:fixture metrics=nmi provenance=short -->\n",
        f"<!-- results:fixture metrics=nmi provenance=short -->\n{render_table(record, ('nmi',), short=True)}\n",
    )
    assert first == expected

    assert update_documents([doc], tmp_path) == []
    assert doc.read_text(encoding="utf-8") == first


def test_report_command_checks_and_renders(record, tmp_path, capsys):
    save_results(record, tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text(DOCUMENT, encoding="utf-8")
    args = ["--results-dir", str(tmp_path), str(doc)]
    assert main(["report", "--check", *args]) == 1 and doc.read_text(encoding="utf-8") == DOCUMENT
    assert main(["report", *args]) == 0 and "updated" in capsys.readouterr().err
    assert main(["report", "--check", *args]) == 0 and "up to date" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("<!-- results:fixture -->\nno end\n", ParameterError, "not closed"),
        ("<!-- results:fixture colour=red -->\n<!-- /results:fixture -->\n", ParameterError, "unknown marker option"),
        ("<!-- results:fixture metrics=loudness -->\n<!-- /results:fixture -->\n", ParameterError, "unknown metric"),
        ("<!-- results:missing -->\n<!-- /results:missing -->\n", DataError, "no results file"),
        ("<!-- results:damaged -->\n<!-- /results:damaged -->\n", DataError, "cannot read"),
        ("<!-- results:renamed -->\n<!-- /results:renamed -->\n", DataError, "names itself 'fixture'"),
        ("<!-- results:empty -->\n<!-- /results:empty -->\n", DataError, "'rows' must be a non-empty list"),
    ],
)
def test_bad_markers_and_files_are_refused_with_the_reason(record, tmp_path, text, error, message):
    save_results(record, tmp_path)
    (tmp_path / "damaged.json").write_text('{"format": 1, "na', encoding="utf-8")
    (tmp_path / "renamed.json").write_text((tmp_path / "fixture.json").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "empty.json").write_text(json.dumps({**json.loads((tmp_path / "fixture.json").read_text()), "name": "empty", "rows": []}))
    doc = tmp_path / "doc.md"
    doc.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message):
        update_documents([doc], tmp_path)
    assert doc.read_text(encoding="utf-8") == text


def test_the_committed_docs_are_rendered_from_the_committed_results():
    """Every table in README.md and docs/ equals what its results file renders (run `report` after `evaluate --save`)."""
    assert update_documents(default_documents(REPO), REPO / "docs" / "results", check=True) == []


def test_evaluate_save_writes_a_results_file(real_music_folder, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "musiclust", "evaluate", "--data", str(real_music_folder), "--models", "random,mfcc_kmeans",
         "--seeds", "2", "--format", "json", "--save", "--checkpoints", str(tmp_path / "ck"),
         "--results-dir", str(tmp_path / "results"), "--results-name", "fixture-folder"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    printed = {r["model"]: r for r in json.loads(out.stdout)}
    saved = load_results("fixture-folder", tmp_path / "results")
    groups = sorted(p.name for p in real_music_folder.iterdir() if p.is_dir())
    assert saved["source"] == "measured" and saved["seeds"] == [0, 1] and saved["k"] == len(groups)
    assert saved["data"]["tracks"] == len(list(real_music_folder.rglob("*.wav"))) and saved["data"]["groups"] == len(groups)
    assert saved["command"].startswith(f"python -m musiclust evaluate --data {real_music_folder} --models random,mfcc_kmeans --seeds 2")
    assert [r["model"] for r in saved["rows"]] == ["random", "mfcc_kmeans"]
    for row in saved["rows"]:
        for metric in ("silhouette", "ari", "nmi", "purity"):
            assert row["metrics"][metric]["mean"] == pytest.approx(printed[row["model"]][metric], abs=1e-12)
            assert row["metrics"][metric]["std"] == pytest.approx(printed[row["model"]][metric + "_std"], abs=1e-12)
    assert "| mfcc_kmeans |" in render_table(saved)


def test_a_bad_results_name_is_refused_before_any_work(capsys):
    assert main(["evaluate", "--save", "--results-name", "../elsewhere", "--data", "/no/such/folder"]) == 2
    assert "--results-name: a results name must be" in capsys.readouterr().err  # not "music folder not found"


def test_the_saved_k_is_the_k_the_run_clustered_with(real_music_folder, tmp_path):
    """One group gives no k to copy: prepare() sweeps k from the data, and the results file records that k."""
    from musiclust.data.collection import load_folder
    from musiclust.pipeline import prepare
    from musiclust.settings import Settings
    from musiclust.store.table import featurize

    group = sorted(p for p in real_music_folder.iterdir() if p.is_dir())[0]
    one = tmp_path / "one"
    shutil.copytree(group, one / group.name)
    assert main(["evaluate", "--data", str(one), "--groups", "folder", "--models", "random", "--seeds", "2", "--format", "json", "--save",
                 "--checkpoints", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "results"), "--results-name", "one"]) == 0
    table = featurize(load_folder(one, groups="folder"))
    chosen = [prepare(table, Settings(seed=seed)).k_choice for seed in (0, 1)]
    assert {c["source"] for c in chosen} == {"sweep"}
    ks = [c["k"] for c in chosen]
    assert load_results("one", tmp_path / "results")["k"] == (ks[0] if ks[0] == ks[1] else ks)
