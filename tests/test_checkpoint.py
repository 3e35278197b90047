"""Checkpoints: atomic switch, fallback to the last good version, no pickle, clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from musiclust.serving import checkpoint as ckpt
from musiclust.errors import CheckpointError, ParameterError


def _make(i: int) -> ckpt.Checkpoint:
    return ckpt.Checkpoint({"value": i}, {"w": np.full(4, i, np.float32)}, {"a": np.arange(3) + i})


def test_round_trip_and_versions(tmp_path):
    for i in range(3):
        ckpt.save(tmp_path, "m", _make(i))
    loaded = ckpt.load(tmp_path, "m")
    assert loaded.meta["value"] == 2
    np.testing.assert_array_equal(loaded.weights["w"], np.full(4, 2, np.float32))
    assert ckpt.available(tmp_path) == ["m"]
    assert len(ckpt.candidates(tmp_path, "m")) == ckpt.KEEP_VERSIONS  # old versions pruned


@pytest.mark.parametrize("damage", ["truncate_weights", "garbage_manifest", "remove_arrays", "wrong_format"])
def test_damaged_current_version_falls_back(tmp_path, damage):
    ckpt.save(tmp_path, "m", _make(1))
    ckpt.save(tmp_path, "m", _make(2))
    current = ckpt.candidates(tmp_path, "m")[0]
    if damage == "truncate_weights":
        data = (current / ckpt.WEIGHTS).read_bytes()
        (current / ckpt.WEIGHTS).write_bytes(data[: len(data) // 2])
    elif damage == "garbage_manifest":
        (current / ckpt.MANIFEST).write_text("{not json")
    elif damage == "remove_arrays":
        (current / ckpt.ARRAYS).unlink()
    else:
        meta = json.loads((current / ckpt.MANIFEST).read_text())
        meta["format_version"] = 99
        (current / ckpt.MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        ckpt.load(tmp_path, "m", fallback=False)
    loaded = ckpt.load(tmp_path, "m")
    assert loaded.meta["value"] == 1
    assert "fallback_reason" in loaded.meta


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint named"):
        ckpt.load(tmp_path, "absent")


def test_a_listing_emptied_by_saves_back_to_back_is_read_again(tmp_path, monkeypatch):
    """A reader's listing can name versions that saves back to back prune before it checks them (CI,
    tests/test_concurrency.py: 'no checkpoint named m' while m existed): it lists again, as after a switch."""
    ckpt.save(tmp_path, "m", _make(7))
    calls, real = [], ckpt.candidates

    def candidates(root, name):  # the first listing finds every version it named gone; then the real ones
        calls.append(name)
        return [] if len(calls) == 1 else real(root, name)

    monkeypatch.setattr(ckpt, "candidates", candidates)
    assert ckpt.load(tmp_path, "m").meta["value"] == 7


def test_pickle_payload_is_refused(tmp_path):
    """A weights file that is a pickle (torch.save style) must never be unpickled."""
    ckpt.save(tmp_path, "m", _make(1))
    current = ckpt.candidates(tmp_path, "m")[0]
    marker = tmp_path / "pwned"
    payload = (
        b"\x80\x04\x95" + b"cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR."
    )
    (current / ckpt.WEIGHTS).write_bytes(payload)
    with pytest.raises(CheckpointError):
        ckpt.load(tmp_path, "m", fallback=False)
    assert not marker.exists()


def test_bad_names_rejected(tmp_path):
    for name in ["../x", "a/b", "", "UPPER", "x" * 65]:
        with pytest.raises(ParameterError):
            ckpt.save(tmp_path, name, _make(0))


KILL_SCRIPT = r"""
import sys, numpy as np
from musiclust.serving import checkpoint as ckpt
root = sys.argv[1]
print("ready", flush=True)
i = 0
while True:
    i += 1
    ckpt.save(root, "m", ckpt.Checkpoint({"value": i}, {"w": np.full(200_000, i, np.float32)}, {"a": np.arange(1000) + i}))
"""


def test_sigkill_during_saves_never_breaks_the_current_checkpoint(tmp_path):
    """Kill a process that saves in a loop at 20 random moments: what is current always loads whole."""
    ckpt.save(tmp_path, "m", _make(0))
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        import time

        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.kill()
        proc.wait()
        loaded = ckpt.load(tmp_path, "m", fallback=False)
        value = loaded.meta["value"]
        if value:
            np.testing.assert_array_equal(loaded.weights["w"], np.full(200_000, value, np.float32))
