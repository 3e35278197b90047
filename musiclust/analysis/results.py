"""Results files: what ``evaluate --save`` measured, with everything needed to judge and re-run it.

The README's results tables used to be typed in by hand, so nothing tied a number to the code,
machine and command that produced it. A results file (``docs/results/<name>.json``, committed) holds
one evaluation: the commit and whether the working tree had changes, the machine (CPU model, cores,
OS, memory, load), the library versions, the date, the exact command, the data set (tracks, groups,
tracks with lyrics, fingerprint), the seeds, k, the settings, and per model the mean ± std of every
metric over the seeds, with the per-seed rows kept for re-analysis. :mod:`musiclust.analysis.report`
renders the tables from these files, so a table in the docs is regenerated, never retyped.

A row whose model was conditioned on the label it is scored against carries
``conditioned_on_label``; a row scored on fewer tracks than the data set (the lyrics-only baseline)
carries ``n_tracks``. A file's ``source`` is ``"measured"`` when this module wrote it from a run;
anything else (e.g. ``"transcribed from README at a3bef89"``) says the numbers were copied by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from musiclust import paths
from musiclust.analysis.metrics import HELDOUT, METRICS, RECONSTRUCTION
from musiclust.errors import DataError, ParameterError

FORMAT = 1
MEASURED = "measured"
# Scores a row may carry besides the clustering metrics, averaged over seeds like them.
EXTRA_SCORES = (RECONSTRUCTION,) + HELDOUT
LIBRARIES = ("torch", "numpy", "scikit-learn", "umap-learn", "librosa", "music21")


@dataclass(frozen=True)
class DataSummary:
    """What a results file says about the tracks it was measured on."""

    spec: str  # as given to --data
    tracks: int
    groups: int
    with_lyrics: int
    fingerprint: str

    @classmethod
    def of_table(cls, spec: str, table) -> "DataSummary":
        return cls(spec, len(table), len(table.label_names()), sum(bool(t) for t in table.lyrics), table.fingerprint())


def results_name(data_spec: str) -> str:
    """The file and marker name of a data set's results: ``natural`` and ``piano`` for the default
    set's variants, else the checkpoint folder name of the collection (``folder-<name>-<hash>``)."""
    if data_spec in ("default", "default:natural"):
        return "natural"
    if data_spec.startswith("default:"):
        return data_spec.split(":", 1)[1]
    from musiclust.service import dataset_slug

    return dataset_slug(data_spec)


def git_state(repo: Path = paths.REPO_ROOT) -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the checkout, or (None, None) outside a git checkout.

    ``dirty`` means tracked files differ from the commit; ``docs/results/`` itself is left out, so
    saving a second results file does not mark the run after it as dirty."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs/results")
    return commit.strip(), (None if status is None else bool(status.strip()))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, {platform.system()} {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def machine_info(load_at_start: Optional[Sequence[float]] = None) -> dict:
    """The machine a run measured on: CPU model, cores, OS, memory, Python, load averages (1 min)."""
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, ValueError, AttributeError):
        memory_gb = None
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": _os_name(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
    }
    if load_at_start is not None:
        info["load_average_start"] = round(float(load_at_start[0]), 2)
    if hasattr(os, "getloadavg"):
        info["load_average_end"] = round(os.getloadavg()[0], 2)
    kernels = math_kernels()
    if kernels:
        info["kernels"] = kernels
    return info


# Each math library's documented switch to its code for an older instruction set. Set before the run,
# they make this machine compute as a machine with that set does (scripts/experiments/kernels.py).
KERNEL_SWITCHES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE")


def math_kernels() -> dict:
    """The CPU kernels the math libraries picked on this machine: the same seed can score differently
    on two machines because of them (docs/results.md, ``kernels.json``), so a results file names them.
    OpenBLAS's kernel set (NumPy, SciPy, scikit-learn), torch's CPU capability when the run imported
    torch, and the switches of :data:`KERNEL_SWITCHES` that were set."""
    kernels = {}
    switches = {name: os.environ[name] for name in KERNEL_SWITCHES if os.environ.get(name)}
    if switches:
        kernels["switches"] = switches
    try:
        from threadpoolctl import threadpool_info

        found = {f"{i.get('architecture')} ({i.get('version')})" for i in threadpool_info() if i.get("internal_api") == "openblas"}
        if found:
            kernels["openblas"] = sorted(found)
    except Exception:  # threadpoolctl missing or a library it cannot read: the file says nothing rather than fail
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        kernels["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    return kernels


def library_versions(names: Sequence[str] = LIBRARIES) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _number(value) -> Optional[float]:
    """A JSON-safe float: NaN, Inf and missing become None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _row_scores(model_rows: list[dict], names: Sequence[str]) -> dict:
    """Mean and population std (as the CLI table) of each score over the seeds that have it."""
    scores = {}
    for name in names:
        values = [v for v in (_number(r.get(name)) for r in model_rows) if v is not None]
        if values:
            scores[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "seeds": len(values)}
    return scores


def summary_rows(per_seed: list[dict]) -> list[dict]:
    """One row per model (first-seen order) from ``evaluate``'s per-seed rows."""
    by_model: dict[str, list[dict]] = {}
    for row in per_seed:
        by_model.setdefault(row["model"], []).append(row)
    rows = []
    for model, model_rows in by_model.items():
        row = {
            "model": model,
            "conditioned_on_label": bool(model_rows[0].get("conditioned_on_label", False)),
            "metrics": _row_scores(model_rows, METRICS + EXTRA_SCORES),
        }
        n_tracks = {int(r["n_tracks"]) for r in model_rows if r.get("n_tracks") is not None}
        if n_tracks:
            row["n_tracks"] = max(n_tracks)
        notes = sorted({str(r["note"]) for r in model_rows if r.get("note")})
        if notes:
            row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def build_record(
    per_seed: list[dict],
    *,
    name: str,
    data: DataSummary,
    seeds: Sequence[int],
    k: Union[int, Sequence[int]],
    settings: dict,
    command: str,
    seconds: float,
    load_at_start: Optional[Sequence[float]] = None,
    code_state: Optional[tuple] = None,
) -> dict:
    """A results file's content for one evaluation run (``source`` = measured, stamped now).

    ``code_state`` is :func:`git_state` taken when the run started (the code that ran); without it, now."""
    if not per_seed:
        raise ParameterError("no scores to save: the evaluation produced no rows")
    commit, dirty = code_state if code_state is not None else git_state()
    return {
        "format": FORMAT,
        "name": name,
        "source": MEASURED,
        "commit": commit,
        "dirty": dirty,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "machine": machine_info(load_at_start),
        "libraries": library_versions(),
        "command": command,
        "data": data.__dict__,
        "seeds": [int(s) for s in seeds],
        "k": int(k) if np.isscalar(k) else [int(x) for x in k],  # a list when the seeds' swept k differ
        "settings": {key: value for key, value in settings.items()},
        "seconds": round(float(seconds), 1),
        "rows": summary_rows(per_seed),
        "per_seed": [{key: (_number(v) if isinstance(v, (float, np.floating)) else v) for key, v in row.items()} for row in per_seed],
    }


def _json_safe(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _number(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_results(record: dict, directory: Path = paths.RESULTS_DIR) -> Path:
    """Write ``<directory>/<name>.json`` (sorted keys off, 1-space indent, newline at the end) atomically."""
    check_record(record, "the record")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record['name']}.json"
    tmp = directory / f".{record['name']}.json.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=_json_safe, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_name(name, where: str = "results name") -> str:
    """``name`` if it can name a results file and a marker (letters, digits, '.', '_', '-'; not '.' or '..')."""
    if not isinstance(name, str) or not name.strip(".") or not all(c.isalnum() or c in "._-" for c in name):
        raise DataError(f"{where}: a results name must be letters, digits, '.', '_' or '-', got {name!r}")
    return name


def check_record(record, where: str) -> dict:
    """``record`` if it has what a table needs; a :class:`DataError` naming ``where`` and the fault if not."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a results file must hold a JSON object")
    if record.get("format") != FORMAT:
        raise DataError(f"{where}: unknown results format {record.get('format')!r} (this code reads {FORMAT})")
    check_name(record.get("name"), where)
    for key in ("source", "date", "command"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: '{key}' must be text")
    if not isinstance(record.get("data"), dict) or not isinstance(record["data"].get("tracks"), int):
        raise DataError(f"{where}: 'data' must give the number of tracks")
    rows = record.get("rows")
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{where}: 'rows' must be a non-empty list")
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("model"), str) or not isinstance(row.get("metrics"), dict):
            raise DataError(f"{where}: row {index} needs 'model' and 'metrics'")
        for metric, value in row["metrics"].items():
            if not isinstance(value, dict) or not isinstance(value.get("mean"), (int, float)):
                raise DataError(f"{where}: row {row['model']!r}, metric {metric!r} needs a numeric 'mean'")
    return record


def load_results(name: str, directory: Path = paths.RESULTS_DIR) -> dict:
    """The results file ``<directory>/<name>.json``, checked."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise DataError(f"no results file {path} (run `python -m musiclust evaluate --save` for that data set)")
    try:  # a file cut short or edited by hand says where it broke (json's line and column)
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    check_record(record, str(path))
    if record["name"] != name:
        raise DataError(f"{path} names itself {record['name']!r}, not {name!r}")
    return record
