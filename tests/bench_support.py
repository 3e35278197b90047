"""What the benchmark tests share: running `python -m musiclust bench`, and checks on its figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from musiclust.models.registry import MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("wav_44k_stereo", "wav_22k_mono", "ogg", "mp3")
WAV_FORMATS = FORMATS[:2]
MODELS = set(MODEL_NAMES)  # what `train --models all` trains


def bench(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiclust", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def has_goal(fig: dict, key: str) -> None:
    g = fig["goals"][key]
    assert g["text"] and g["met"] in (True, False, None)


def run_quick(tmp_path_factory, *args: str) -> tuple[dict, str, Path]:
    """One ``bench --quick`` run with ``args``: its results, its printed table and the JSON's path."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = bench("--quick", *args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout, out


def no_errors(results: dict, figures: tuple) -> None:
    """Every figure of ``figures`` is there and none failed."""
    figs = results["figures"]
    assert set(figures) <= set(figs)
    for name in figures:
        assert "error" not in figs[name], figs[name].get("traceback")
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert results["settings"]["quick"] is True
