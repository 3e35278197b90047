"""Faults tried for real, on real trained checkpoints (the feature cache's: ``test_cache_faults.py``).

- SIGKILL while a *real* model checkpoint is being saved, 20 times, each kill proven to land inside a
  save (the saver is frozen and the files on disk checked before the kill): the version in use always
  loads whole, without falling back (``tests/test_checkpoint.py`` does the same on toy checkpoints);
- truncated, bit-flipped, NaN-holding and wrong-architecture checkpoints: a clear error, and the
  service (and so the app) falls back to the last good version, which answers as before;
- a training run whose loss becomes NaN, through the app's own background retrain: aborted, the
  previous models kept byte for byte, the reason shown in the page;
- checkpoint files crafted to run code on load (pickle payloads): refused, nothing runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.errors import CheckpointError
from musiclust.service import Service, dataset_slug
from support import Pickled, tree_digest

REPO = Path(__file__).resolve().parents[1]
MODEL = "conv_vae_fusion"  # the largest checkpoint: a conv VAE plus fusion state



@pytest.fixture(scope="module")
def source(trained_checkpoints, real_music_folder):
    """(dataset spec, checkpoints root, model folder) of the trained fixture models (read-only)."""
    slug = dataset_slug(str(real_music_folder))
    return str(real_music_folder), trained_checkpoints, trained_checkpoints / slug


@pytest.fixture
def two_versions(source, tmp_path):
    """A private checkpoints root where MODEL has a good previous version and a current one to damage."""
    dataset, _, folder = source
    root = tmp_path / "checkpoints"
    model_root = root / dataset_slug(dataset)
    good = ckpt.load(folder, MODEL, fallback=False)
    good.meta["which"] = "previous"
    previous = ckpt.save(model_root, MODEL, good)
    good.meta["which"] = "current"
    current = ckpt.save(model_root, MODEL, good)
    return dataset, root, model_root, previous, current


# --- SIGKILL mid-save ---------------------------------------------------------------------------
# A process saves the real model over and over. Each kill is proven to land inside a save: the saver is
# frozen first (SIGSTOP), the files on disk say where it stands (writing its staging folder, or renamed it
# but not yet switched the link), and only then is it killed (SIGKILL); frozen between two saves, it is
# thawed and frozen again a moment later. So all 20 kills land mid-save on any machine at any speed.
SAVER = textwrap.dedent(
    r"""
    import sys
    from musiclust.serving import checkpoint as ckpt
    source, root, name = sys.argv[1:4]
    checkpoint = ckpt.load(source, name, fallback=False)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        checkpoint.meta["save_index"] = i
        ckpt.save(root, name, checkpoint)
    """
)


def versions_of(model_root: Path, name: str) -> set[str]:
    return {p.name for p in (model_root / ".versions" / name).iterdir() if p.is_dir() and not p.name.startswith(".")}


def save_phase(model_root: Path, name: str, pid: int, earlier: set[str]) -> str | None:
    """Where a frozen saver stands in ``checkpoint.save``: which files its staging folder holds, or
    "renamed, link not switched" (its newest version is not the one in use); ``None`` between two saves.
    ``earlier``: the versions that existed before this saver started (a killed saver's renamed one too)."""
    staging = list((model_root / ".versions" / name).glob(f".staging-*-{pid}"))
    if staging:
        present = [part for part in (ckpt.WEIGHTS, ckpt.ARRAYS, ckpt.MANIFEST) if (staging[0] / part).exists()]
        return "staging: " + (", ".join(present) or "empty")
    own = sorted(versions_of(model_root, name) - earlier)
    current = os.readlink(model_root / name).rsplit("/", 1)[-1]
    return "renamed, link not switched" if own and own[-1] != current else None


def kill_mid_save(proc: subprocess.Popen, model_root: Path, name: str, earlier: set[str], rng: np.random.Generator) -> str:
    """Let 0-2 whole saves pass (so some kills follow saves that pruned), then freeze the saver at random
    moments until it is frozen inside a save, and SIGKILL it; returns the phase it was killed in."""
    whole = int(rng.integers(0, 3))
    for _ in range(100_000):  # guards against a saver that never saves, not speed limits
        if len(versions_of(model_root, name) - earlier) >= whole:
            break
        time.sleep(0.002)
    for _ in range(10_000):
        time.sleep(float(rng.uniform(0.0, 0.02)))
        proc.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is really stopped
        assert os.WIFSTOPPED(status), f"the saver exited (status {status})"
        phase = save_phase(model_root, name, proc.pid, earlier)
        if phase is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return phase
        proc.send_signal(signal.SIGCONT)
    raise AssertionError("the saver was never caught inside a save")


def test_sigkill_mid_save_of_a_real_model_20_times(source, tmp_path):
    dataset, _, folder = source
    expected = ckpt.load(folder, MODEL, fallback=False)
    root = tmp_path / "checkpoints"
    model_root = root / dataset_slug(dataset)
    shutil.copytree(folder, model_root, symlinks=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = np.random.default_rng(20)
    phases: dict[str, int] = {}
    for trial in range(20):
        earlier = versions_of(model_root, MODEL)
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(folder), str(model_root), MODEL],
                                stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            phase = kill_mid_save(proc, model_root, MODEL, earlier, rng)
            phases[phase] = phases.get(phase, 0) + 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

        # the version in use loads whole, without any fallback, and serves the very same model
        loaded = ckpt.load(model_root, MODEL, fallback=False)
        assert set(loaded.weights) == set(expected.weights)
        for key, value in expected.weights.items():
            np.testing.assert_array_equal(loaded.weights[key], value)
        for key, value in expected.arrays.items():
            np.testing.assert_array_equal(loaded.arrays[key], value)
        bundle = Service(dataset, root).bundle(MODEL)
        assert "fallback_reason" not in bundle.meta, f"trial {trial}, killed at {phase}: {bundle.meta['fallback_reason']}"
    stale = list((root / dataset_slug(dataset) / ".versions" / MODEL).glob(".staging-*"))
    ckpt.save(model_root, MODEL, expected)  # one good save clears what the killed ones left
    left = list((root / dataset_slug(dataset) / ".versions" / MODEL).glob(".staging-*"))
    print(f"\nSIGKILL: 20/20 inside a save, by phase {phases}; {len(stale)} staging folders left, {len(left)} after a save")
    assert sum(phases.values()) == 20
    assert not left, "staging folders of killed saves are cleared by the next save"
    assert len(ckpt.candidates(model_root, MODEL)) <= ckpt.KEEP_VERSIONS


# --- damaged checkpoints: clear error, fallback to the last good one --------------------------------
def _flip_byte(path: Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))


def _rewrite_manifest(folder: Path, change) -> None:
    meta = json.loads((folder / ckpt.MANIFEST).read_text())
    change(meta)
    (folder / ckpt.MANIFEST).write_text(json.dumps(meta))


def _nan_weights_with_matching_digest(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(folder / ckpt.WEIGHTS))
    key = sorted(k for k in weights if weights[k].dtype.kind == "f")[0]
    weights[key] = weights[key].copy()
    weights[key].flat[0] = np.nan
    save_file(weights, str(folder / ckpt.WEIGHTS))
    _rewrite_manifest(folder, lambda m: m["files"].update({ckpt.WEIGHTS: hashlib.sha256((folder / ckpt.WEIGHTS).read_bytes()).hexdigest()}))


def _other_architecture(meta: dict) -> None:
    meta["architecture"] = "basic_vae"


def _other_latent(meta: dict) -> None:
    meta["model_config"]["latent_dim"] = meta["model_config"]["latent_dim"] * 2


def _fewer_tracks(meta: dict) -> None:
    meta["tracks"] = meta["tracks"][:-1]


def _unknown_architecture(meta: dict) -> None:
    meta["architecture"] = "os.system"


DAMAGE = {
    "weights truncated": (lambda f: (f / ckpt.WEIGHTS).write_bytes((f / ckpt.WEIGHTS).read_bytes()[:1000]), "truncated or corrupt|SHA-256"),
    "weights empty": (lambda f: (f / ckpt.WEIGHTS).write_bytes(b""), "truncated or corrupt|SHA-256"),
    "arrays cut in half": (lambda f: (f / ckpt.ARRAYS).write_bytes((f / ckpt.ARRAYS).read_bytes()[: (f / ckpt.ARRAYS).stat().st_size // 2]), "truncated or corrupt|SHA-256"),
    "one bit flipped in the weights' data": (lambda f: _flip_byte(f / ckpt.WEIGHTS, 0.7), "SHA-256 does not match"),
    "one bit flipped in the arrays' data": (lambda f: _flip_byte(f / ckpt.ARRAYS, 0.9), "SHA-256 does not match"),
    "manifest cut short": (lambda f: (f / ckpt.MANIFEST).write_text((f / ckpt.MANIFEST).read_text()[:200]), "manifest.json is corrupt"),
    "manifest missing": (lambda f: (f / ckpt.MANIFEST).unlink(), "no manifest.json"),
    "manifest not UTF-8": (lambda f: (f / ckpt.MANIFEST).write_bytes(b"\xff\xfe\x00garbage"), "manifest.json is corrupt"),
    "NaN weights (digest matches)": (_nan_weights_with_matching_digest, "NaN/Inf"),
    "another architecture": (lambda f: _rewrite_manifest(f, _other_architecture), "does not match its architecture"),
    "another latent size": (lambda f: _rewrite_manifest(f, _other_latent), "does not match its architecture"),
    "an unknown architecture": (lambda f: _rewrite_manifest(f, _unknown_architecture), "invalid|does not match|unknown"),
    "track list and arrays disagree": (lambda f: _rewrite_manifest(f, _fewer_tracks), "inconsistent"),
    "manifest lacks a field": (lambda f: _rewrite_manifest(f, lambda m: m.pop("tfidf")), "lacks 'tfidf'"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_falls_back_to_the_last_good_one(two_versions, real_clip_paths, damage):
    dataset, root, model_root, previous, current = two_versions
    reference = Service(dataset, root).analyse(MODEL, real_clip_paths[3]).placement
    harm, message = DAMAGE[damage]
    harm(current)

    # alone, the damaged version is a clear CheckpointError, never another exception
    with pytest.raises(CheckpointError, match=message) as info:
        ckpt.load(model_root, MODEL, fallback=False, build=ModelBundle.from_checkpoint)
    assert current.name in str(info.value) and len(str(info.value)) < 600

    service = Service(dataset, root)
    bundle = service.bundle(MODEL)
    assert bundle.meta["which"] == "previous", "the last good version is served"
    assert current.name in bundle.meta["fallback_reason"]
    answer = service.analyse(MODEL, real_clip_paths[3]).placement
    assert answer.cluster == reference.cluster and answer.coords == pytest.approx(reference.coords)
    assert service.version(MODEL) == current.name, "the damaged version is not deleted: evidence stays"


def test_no_good_version_left_is_a_clear_error(two_versions):
    dataset, root, model_root, previous, current = two_versions
    (current / ckpt.WEIGHTS).write_bytes(b"")
    _rewrite_manifest(previous, _other_architecture)
    with pytest.raises(CheckpointError, match=rf"{current.name}.*weights.safetensors"):
        Service(dataset, root).bundle(MODEL)


# --- code on load: refused -----------------------------------------------------------------------
def _torch_style_zip(marker: Path) -> bytes:
    """What ``torch.save`` writes (a zip holding ``data.pkl``), with a payload that touches ``marker``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Pickled(marker)))
        archive.writestr("archive/version", "3\n")
    return buf.getvalue()


@pytest.mark.parametrize("part", [ckpt.WEIGHTS, ckpt.ARRAYS, ckpt.MANIFEST])
@pytest.mark.parametrize("payload", ["pickle", "torch.save zip"])
def test_checkpoint_files_crafted_to_run_code_are_refused(two_versions, tmp_path, part, payload):
    dataset, root, model_root, previous, current = two_versions
    marker = tmp_path / f"pwned-{part}-{payload.replace(' ', '-')}"
    data = pickle.dumps(Pickled(marker)) if payload == "pickle" else _torch_style_zip(marker)
    (current / part).write_bytes(data)
    with pytest.raises(CheckpointError):
        ckpt.load(model_root, MODEL, fallback=False, build=ModelBundle.from_checkpoint)
    bundle = Service(dataset, root).bundle(MODEL)
    assert bundle.meta["which"] == "previous"
    assert not marker.exists(), "a crafted checkpoint ran code"


def test_no_loader_in_the_code_can_unpickle():
    """Static guard: nothing in the package or the app loads with pickle, torch.load or allow_pickle."""
    banned = ("pickle.load", "torch.load(", "allow_pickle=True", "joblib.load", "dill.load", "cloudpickle", "pd.read_pickle")
    files = [*REPO.joinpath("musiclust").rglob("*.py"), REPO / "app.py", *REPO.joinpath("musiclust_app").rglob("*.py"), *REPO.joinpath("pages").glob("*.py")]
    hits = [f"{f.relative_to(REPO)}: {b}" for f in files if f.is_file() for b in banned if b in f.read_text(encoding="utf-8")]
    assert not hits, hits


# --- a training run whose loss becomes NaN ----------------------------------------------------------
NAN_INJECTOR = textwrap.dedent(
    """
    # Test-only fault injection, loaded by the retrain child through PYTHONPATH: after a few optimizer
    # steps one weight becomes NaN, so the next loss is NaN (as when a learning rate blows up).
    import os
    if os.environ.get("MUSICLUST_TEST_NAN_AFTER"):
        import torch

        _after = int(os.environ["MUSICLUST_TEST_NAN_AFTER"])
        _step = torch.optim.Adam.step
        _count = [0]

        def _poisoned(self, *args, **kwargs):
            out = _step(self, *args, **kwargs)
            _count[0] += 1
            if _count[0] == _after:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
            return out

        torch.optim.Adam.step = _poisoned
    """
)


def test_nan_loss_during_a_background_retrain_keeps_the_models_and_says_why(source, tmp_path, monkeypatch):
    from musiclust.serving.jobs import FAILED, RUNNING, RetrainJobs

    dataset, trained, _ = source
    root = tmp_path / "checkpoints"
    shutil.copytree(trained, root, symlinks=True)
    service = Service(dataset, root)
    versions = {n: service.version(n) for n in service.models()}
    before = tree_digest(root)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(NAN_INJECTOR)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(inject), str(REPO)]))
    monkeypatch.setenv("MUSICLUST_TEST_NAN_AFTER", "3")

    jobs = RetrainJobs(tmp_path / "jobs", REPO)  # exactly what the app's retrain button calls
    jobs.start(["--data", dataset, "--models", "basic_vae", "--epochs", "3", "--latent-dim", "8",
                "--checkpoints", str(root)])
    deadline = time.monotonic() + 240
    while (status := jobs.status()).state == RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
    log = jobs.log_path.read_text(errors="replace")
    assert status.state == FAILED, f"{status.state}: {status.message}\n{log[-2000:]}"
    assert "diverged" in status.message and "nan" in status.message.lower(), status.message
    assert "previous model" in status.message
    assert "Traceback" not in log, log[-2000:]
    assert tree_digest(root) == before, "a failed retrain changed saved models"
    assert {n: Service(dataset, root).version(n) for n in versions} == versions

    # and the page says why
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(root))
    monkeypatch.setenv("MUSICLUST_DATA", dataset)
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    monkeypatch.delenv("MUSICLUST_TEST_NAN_AFTER")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(str(e.value) for e in at.error)
    assert "Last retrain failed" in shown and "diverged" in shown and "nan" in shown.lower(), shown


# --- the app on a damaged current version -----------------------------------------------------------
@pytest.fixture
def damaged_app(two_versions, monkeypatch, tmp_path):
    dataset, root, model_root, previous, current = two_versions  # MODEL is the only model there: the page serves it
    (current / ckpt.WEIGHTS).write_bytes((current / ckpt.WEIGHTS).read_bytes()[:5000])
    monkeypatch.setenv("MUSICLUST_CHECKPOINTS", str(root))
    monkeypatch.setenv("MUSICLUST_DATA", dataset)
    monkeypatch.setenv("MUSICLUST_JOBS", str(tmp_path / "jobs"))
    return root, current


def test_app_serves_the_last_good_version_of_a_damaged_model(damaged_app, real_clip_paths):
    from streamlit.testing.v1 import AppTest

    root, current = damaged_app
    before = tree_digest(root)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.file_uploader[0].set_value((real_clip_paths[3].name, real_clip_paths[3].read_bytes(), "audio/wav"))
    at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    assert any("lands in cluster" in str(s.value) for s in at.success)
    assert tree_digest(root) == before, "the app repaired or deleted files on its own"


def test_app_says_it_fell_back_and_why(damaged_app):
    from streamlit.testing.v1 import AppTest

    root, current = damaged_app
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/latent_map.py").run()  # a page that loads the model
    notices = " ".join(str(e.value) for kind in ("warning", "info", "error", "caption") for e in getattr(at, kind))
    assert current.name in notices and "previous" in notices.lower(), notices

