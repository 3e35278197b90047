"""Does a seed give the same scores on a CPU with other vector instructions? This machine run twice.

Issue 13 found seed-0 NMI of the hybrid join 0.07 apart on two 2-core machines. Threads are pinned
since (musiclust/determinism.py), which leaves the CPU's instruction set: torch, MKL, oneDNN and
OpenBLAS each pick AVX-512 or AVX2 code at run time, and those round differently. Each library can be
told to run its AVX2 code on an AVX-512 machine, so one machine can stand in for both: ``train`` runs
once as the machine is (``native``) and once with the AVX2 paths forced (``avx2``, what an AVX2-only
machine of the same kind runs), each in its own process, on the same data and seed. Compared: every
score of every model, the cluster labels, the weights and the map.

    python scripts/experiments/kernels.py --data default --models all --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import REPO, provenance, write_results  # noqa: E402

# What an AVX2 machine's libraries run, forced here before torch loads (each library's documented switch).
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
# The AVX2 set without oneDNN's switch: the recipe docs/results.md tried across two machines on 2026-12-04.
KERNELS = {"native": {}, "avx2": AVX2, "avx2_but_onednn": {k: v for k, v in AVX2.items() if k != "ONEDNN_MAX_CPU_ISA"}}
SCORES = ("nmi", "ari", "purity", "silhouette", "calinski_harabasz", "davies_bouldin", "stability",
          "reconstruction_mse_db", "heldout_nmi", "heldout_ari")


def train(kernels: dict, data: str, models: str, seed: int, root: Path) -> tuple[Path, float]:
    env = {**os.environ, **kernels}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "musiclust", "train", "--data", data, "--models", models, "--seed", str(seed),
                    "--checkpoints", str(root)], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    folders = [p.parent for p in root.rglob("evaluation.json")]
    if len(folders) != 1:
        raise RuntimeError(f"expected one data set under {root}, found {folders}")
    return folders[0], time.perf_counter() - started


def capability(kernels: dict) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **kernels}, capture_output=True, text=True,
                          check=True).stdout.strip()


def compare(a: Path, b: Path) -> dict:
    """Per model: scores side by side, whether labels, weights and map are the same bits."""
    from safetensors.numpy import load_file
    from sklearn.metrics import adjusted_rand_score

    rows_a = {r["model"]: r for r in json.loads((a / "evaluation.json").read_text())["rows"]}
    rows_b = {r["model"]: r for r in json.loads((b / "evaluation.json").read_text())["rows"]}
    out = {}
    for model in sorted(rows_a):
        ra, rb = rows_a[model], rows_b[model]
        entry = {"scores": {k: [ra[k], rb[k]] for k in SCORES if ra.get(k) is not None},
                 "largest_score_difference": max((abs(ra[k] - rb[k]) for k in SCORES if ra.get(k) is not None), default=0.0)}
        if (a / model / "arrays.safetensors").is_file():
            xa, xb = load_file(a / model / "arrays.safetensors"), load_file(b / model / "arrays.safetensors")
            wa, wb = load_file(a / model / "weights.safetensors"), load_file(b / model / "weights.safetensors")
            entry.update(
                labels_identical=bool(np.array_equal(xa["labels"], xb["labels"])),
                partition_ari=float(adjusted_rand_score(xa["labels"], xb["labels"])),
                weights_identical=all(np.array_equal(wa[k], wb[k]) for k in wa),
                largest_weight_difference=max(float(np.max(np.abs(wa[k] - wb[k]), initial=0.0)) for k in wa),
                map_largest_move=float(np.max(np.abs(xa["coords"] - xb["coords"]))),
                map_extent=float(np.ptp(xa["coords"], axis=0).max()),
            )
        out[model] = entry
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="default")
    parser.add_argument("--models", default="all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1, each trained with both kernel sets")
    parser.add_argument("--compare", default="native,avx2", help="the two kernel sets compared: " + ", ".join(KERNELS))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "kernels.json")
    args = parser.parse_args(argv)
    first, second = args.compare.split(",")
    record = {**provenance(), "what": __doc__.split("\n\n")[0], "data": args.data, "compared": [first, second],
              "kernels": {name: {"environment": KERNELS[name], "torch_cpu_capability": capability(KERNELS[name])}
                          for name in (first, second)},
              "seeds": {}}
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            folders, seconds = {}, {}
            for name in (first, second):
                folders[name], seconds[name] = train(KERNELS[name], args.data, args.models, seed, Path(tmp) / name)
            models = compare(folders[first], folders[second])
        record["seeds"][str(seed)] = {"train_seconds": seconds, "models": models}
        for model, entry in models.items():
            print(f"seed {seed} {model:18s} largest score difference {entry['largest_score_difference']:.2e}"
                  + (f", partition ARI {entry['partition_ari']:.3f}, labels identical {entry['labels_identical']}, "
                     f"weights identical {entry['weights_identical']}" if "partition_ari" in entry else ""), flush=True)
    write_results(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
