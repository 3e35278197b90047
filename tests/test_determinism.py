"""The same seed gives the same bits: weights, embeddings, clusters, map and scores, whatever the thread
settings of the process (``musiclust.determinism``).

A fresh process whose thread pools (``OMP_NUM_THREADS``, MKL, OpenBLAS, numba) are set to another count
than the test run's own processes have (1 where they have several, else 2) trains the session's models
again from the session's features with the session's settings and scores the baselines; it and the
session's own checkpoints, trained in a test process, must agree bit for bit, and so must the baselines'
scores computed here. Without the pinned threads they do not: on the 2-core development machine one and
two torch threads gave the ConvVAE and the BasicVAE other weights after two epochs, and one and two
OpenBLAS threads gave the PCA baseline another embedding (silhouette 0.208104208 vs 0.208104104).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from musiclust.serving import checkpoint as ckpt
from musiclust.service import dataset_slug

REPO = Path(__file__).resolve().parents[1]
MODELS = ("conv_vae", "conv_vae_fusion", "mvae_poe", "beta_cvae")  # convolutions, PoE, the SVD join, labels
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def fingerprint(checkpoint: ckpt.Checkpoint) -> dict:
    """What a trained model is, bit for bit: SHA-256 of every weight and fitted array, and its scores."""

    def digest(value) -> str:
        array = np.ascontiguousarray(value)
        return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()[:20]

    meta = checkpoint.meta
    return {
        "weights": {k: digest(v) for k, v in sorted(checkpoint.weights.items())},
        "arrays": {k: digest(v) for k, v in sorted(checkpoint.arrays.items())},
        "metrics": meta["metrics"],
        "reconstruction_mse_db": meta["reconstruction_mse_db"],
        "history": [{k: v for k, v in row.items() if k != "seconds"} for row in meta["history"]],
    }


RETRAIN = textwrap.dedent(
    r"""
    import json, sys
    from pathlib import Path
    import torch
    from musiclust.data.collection import load_folder
    from musiclust.pipeline import Settings, train_models
    from musiclust.serving import checkpoint as ckpt
    from musiclust.store.table import featurize
    from musiclust.analysis.baselines import BASELINES, PRETRAINED_BASELINES
    from musiclust.analysis.evaluation import baseline_scores
    from musiclust.pipeline import prepare
    folder, cache, out, settings = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
    table = featurize(load_folder(folder), cache_dir=cache, jobs=1)
    names = settings.pop("models")
    for name, bundle in train_models(table, names, Settings(**settings)).items():
        ckpt.save(out, name, bundle.to_checkpoint())
    prep = prepare(table, Settings(**settings))
    (out / "baselines.json").write_text(json.dumps({name: baseline_scores(name, prep) for name in BASELINES if name not in PRETRAINED_BASELINES}))
    print(torch.get_num_threads())  # the process's own count, outside the pinned sections
    """
)


def test_same_seed_same_bits_whatever_the_threads(trained_checkpoints, real_music_folder, feature_cache, tmp_path):
    import torch

    from musiclust.analysis.baselines import BASELINES, PRETRAINED_BASELINES
    from musiclust.analysis.evaluation import baseline_scores
    from musiclust.pipeline import Settings, prepare
    from musiclust.store.table import featurize
    from musiclust.data.collection import load_folder

    source = trained_checkpoints / dataset_slug(str(real_music_folder))
    session = {name: fingerprint(ckpt.load(source, name, fallback=False)) for name in MODELS}
    settings = dict(ckpt.load(source, "conv_vae", fallback=False).meta["settings"], models=list(MODELS))  # what the session used
    here = torch.get_num_threads()  # the test processes' own count (they share one environment)
    threads = 1 if here > 1 else 2
    env = {**os.environ, "PYTHONPATH": str(REPO), **{v: str(threads) for v in THREAD_VARIABLES}}
    out_dir = tmp_path / "retrained"
    proc = subprocess.run(
        [sys.executable, "-c", RETRAIN, str(real_music_folder), str(feature_cache), str(out_dir), json.dumps(settings)],
        env=env, capture_output=True, text=True, timeout=900,  # a hang guard, not a speed limit
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) == threads != here, "the process really ran with another thread count"
    for name in MODELS:
        got = fingerprint(ckpt.load(out_dir, name, fallback=False))
        for part in ("weights", "arrays"):
            assert got[part].keys() == session[name][part].keys()
            differ = sorted(k for k in got[part] if got[part][k] != session[name][part][k])
            assert not differ, f"{name} with {threads} thread(s): {part} {differ[:4]} differ from the session's run ({here})"
        assert got["metrics"] == session[name]["metrics"], f"{name} with {threads} thread(s): other scores"
        assert got["reconstruction_mse_db"] == session[name]["reconstruction_mse_db"]
        assert got["history"] == session[name]["history"], f"{name} with {threads} thread(s): other training losses"
    settings.pop("models")
    prep = prepare(featurize(load_folder(real_music_folder), cache_dir=feature_cache, jobs=1), Settings(**settings))
    ours = {name: baseline_scores(name, prep) for name in BASELINES if name not in PRETRAINED_BASELINES}
    theirs = json.loads((out_dir / "baselines.json").read_text())
    assert json.loads(json.dumps(ours)) == theirs, f"the baselines' scores differ between {here} and {threads} thread(s)"


SECTIONS = textwrap.dedent(
    r"""
    import json, sys
    import numpy as np
    from threadpoolctl import threadpool_info
    from musiclust.determinism import reproducible

    def pools():
        return sorted((p["internal_api"], p["num_threads"]) for p in threadpool_info())

    report = {}
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    with reproducible():
        report["numpy_only"] = pools()
    from musiclust.analysis.clustering import cluster  # scikit-learn brings its OpenMP runtime after the first section
    labels, _ = cluster(x, 3, "kmeans", 0)
    with reproducible():
        report["with_sklearn"] = pools()
    report["after"] = pools()
    report["torch_after_clustering"] = "torch" in sys.modules
    import torch
    with reproducible(seed=0):
        report["torch_inside"] = [torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()]
        from musiclust.models import build_model
        model = build_model("conv_vae", {}, seed=0)
        model({"mel": torch.zeros(2, 1, 128, 128)})
    report["torch_after"] = [torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()]
    report["compiler_loaded"] = "torch._inductor" in sys.modules
    print(json.dumps(report))
    """
)


def test_sections_pin_every_pool_and_cost_no_torch_or_compiler_import():
    """In a fresh process with two threads everywhere: a section pins every BLAS and OpenMP pool to one
    thread, including a pool a later import brings (scikit-learn's OpenMP), and puts them back after;
    clustering alone never imports torch; a seeded section sets torch's threads and deterministic flag
    and restores them, without loading torch's compiler stack (``torch.use_deterministic_algorithms``
    imports it, ~2.5 s a process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **{v: "2" for v in THREAD_VARIABLES}}
    proc = subprocess.run([sys.executable, "-c", SECTIONS], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["numpy_only"] and all(n == 1 for _, n in r["numpy_only"])
    assert "openmp" in {api for api, _ in r["with_sklearn"]} and all(n == 1 for _, n in r["with_sklearn"])
    assert all(n == 2 for _, n in r["after"]), r["after"]  # the process's own counts are back
    assert r["torch_after_clustering"] is False
    assert r["torch_inside"] == [1, True] and r["torch_after"] == [2, False]
    assert r["compiler_loaded"] is False
