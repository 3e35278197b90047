"""`python -m musiclust train` on a user's library as it comes: no lyrics, no groups, and a model that
fails. Every model that can train is saved; the rest are reported with their reason (issue 12 §1)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musiclust.models.registry import MODEL_NAMES, SPECS, ConfigInputs
from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.serving.jobs import SUCCEEDED, read_status
from musiclust.service import Service, dataset_slug

REPO = Path(__file__).resolve().parents[1]
SMALL = ("--epochs", "1", "--latent-dim", "8")


def _train(*args, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "musiclust", "train", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory, real_clips) -> Path:
    """The real clips in one folder: no sub-folders (no groups) and no .txt files (no lyrics)."""
    root = tmp_path_factory.mktemp("flat")
    for clip_id, path in real_clips.items():
        shutil.copy(path, root / f"{clip_id}.wav")
    return root


@pytest.fixture(scope="module")
def flat_run(flat_folder, tmp_path_factory):
    checkpoints = tmp_path_factory.mktemp("flat-checkpoints")
    status = checkpoints / "status.json"
    out = _train("--data", str(flat_folder), "--models", "all", "--k", "3", *SMALL, "--checkpoints", str(checkpoints),
                 "--status-file", str(status))
    return out, checkpoints / dataset_slug(str(flat_folder)), status


def test_flat_folder_without_lyrics_or_groups_saves_every_trainable_model(flat_run, flat_folder):
    out, root, status_path = flat_run
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    bare = ConfigInputs(latent_dim=8, n_mels=128, frames=128)  # what this folder offers: no lyrics, no groups
    trainable = sorted(n for n in MODEL_NAMES if SPECS[n].skip_reason(bare) is None)
    skipped = sorted(set(MODEL_NAMES) - set(trainable))
    assert trainable and skipped, "the registry has models that need groups and models that do not"
    assert ckpt.available(root) == trainable
    lines = out.stdout.splitlines()
    assert lines[0] == "k = 3 (given)"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == set(MODEL_NAMES)
    for name in skipped:
        assert rows[name].split()[1] == "skipped" and "group" in rows[name]
    for name in trainable:
        assert rows[name].split()[1] == "trained"
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert warning == [f"warning: {len(trainable)} of {len(MODEL_NAMES)} trained; " + "; ".join(
        f"{n} skipped: {SPECS[n].skip_reason(bare)}" for n in MODEL_NAMES if n in skipped)]
    status = read_status(status_path)  # what the app's sidebar reads
    assert status.state == SUCCEEDED and status.message == warning[0][len("warning: "):]
    assert sorted(status.trained) == trainable and set(status.not_trained) == set(skipped)
    assert all(why.startswith("skipped: ") for why in status.not_trained.values())
    service = Service(str(flat_folder), root.parent)
    for name in trainable:
        bundle = service.bundle(name)
        assert bundle.k == 3 and len(bundle.tracks) == len(list(flat_folder.glob("*.wav")))
        assert not bundle.uses_lyrics and bundle.meta["k_choice"] == {"k": 3, "source": "given"}
        assert bundle.meta.get("note") == SPECS[name].note(bare)
    report = service.evaluation()
    assert {r["model"] for r in report["rows"]} >= set(trainable) and report["k_choice"]["k"] == 3


def test_the_lyrics_join_without_lyrics_is_its_audio_model(flat_run, flat_folder):
    """No track has lyrics: the joining model says so and places tracks exactly as the model it reuses."""
    _, root, _ = flat_run
    joiner = next(s for s in SPECS.values() if s.joins_lyrics)
    joined, audio = (ModelBundle.from_checkpoint(ckpt.load(root, n)) for n in (joiner.name, joiner.reuses))
    assert joined.fusion is None and f"same as {joiner.reuses}" in joined.meta["note"]
    np.testing.assert_array_equal(joined.space, audio.space)
    np.testing.assert_array_equal(joined.labels, audio.labels)


def test_no_trainable_model_exits_2_and_saves_nothing(flat_folder, tmp_path):
    needs_groups = [n for n in MODEL_NAMES if SPECS[n].needs_labels]
    out = _train("--data", str(flat_folder), "--models", ",".join(needs_groups), "--k", "3", *SMALL,
                 "--checkpoints", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: no model trained: 0 of "), out.stderr
    assert ckpt.available(tmp_path / dataset_slug(str(flat_folder))) == []


def test_a_model_that_fails_keeps_the_others_and_its_previous_version(trained_checkpoints, real_music_folder, tmp_path):
    """A β so large that the conditioned model's loss explodes at its first step: it fails (its previous
    checkpoint stays in use); the model trained beside it is saved as a new version."""
    failing = next(n for n in MODEL_NAMES if SPECS[n].needs_labels)  # the only model that reads --beta
    other = next(n for n in MODEL_NAMES if not SPECS[n].uses_lyrics and not SPECS[n].needs_labels)
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(trained_checkpoints, checkpoints, symlinks=True)
    data = str(real_music_folder)
    before = Service(data, checkpoints)
    versions = {n: before.version(n) for n in (failing, other)}
    old_row = {"model": failing, "seed": 0, "nmi": 0.5}  # the metrics page's row of the model in use
    ckpt.save_report(before.root, "evaluation", {"seeds": 1, "rows": [old_row]})
    status_path = tmp_path / "status.json"
    out = _train("--data", data, "--models", f"{failing},{other}", "--beta", "1e12", *SMALL,
                 "--checkpoints", str(checkpoints), "--status-file", str(status_path))
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and warning[0].startswith(f"warning: 1 of 2 trained; {failing} failed: ")
    assert "diverged" in warning[0]
    after = Service(data, checkpoints)
    assert after.version(failing) == versions[failing]
    assert after.version(other) != versions[other]
    status = read_status(status_path)
    assert status.state == SUCCEEDED and status.trained == [other]
    assert list(status.not_trained) == [failing] and status.not_trained[failing].startswith("failed: ")
    rows = json.loads((before.root / "evaluation.json").read_text())["rows"]
    assert old_row in rows and [r["model"] for r in rows].count(failing) == 1  # kept: its old model is in use
    assert [r["model"] for r in rows].count(other) == 1
