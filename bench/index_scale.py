"""Figure 8: the index at 100k tracks — building it (clustering, map) and answering an upload against it.

The index of a trained model is its collection's standardised latents (``space``), their clusters and
their 2-D map. At 100k tracks it is built with the large-library paths of :mod:`musiclust.analysis.clustering`
(MiniBatchKMeans above ``KMEANS_MAX_TRACKS``, UMAP fitted on a ``UMAP_FIT_MAX`` sample + ``transform``
above that) and every upload is placed in it by an exact search (:func:`musiclust.analysis.clustering.nearest`).

Inputs: the real trained model's latents of the default set (the app's default model; the benchmark
finds its checkpoint as the other figures do), tiled to 100k rows with a seeded jitter of 5 % of each
dimension's spread (:func:`bench.replicas.tile_rows`; unit vectors kept unit for a model that
clusters by direction). With no trained model the clustering and map are timed on a synthetic stand-in
(Gaussian blobs of the same shape, said so in ``latents``) and the upload part is skipped. Reference,
measured the same way in the same run: the real collection (490 tracks), untiled.

Measured, each step in a fresh process (one thread: ``OMP_NUM_THREADS=1`` and friends) so its memory is
its own: imports and a warm-up first (UMAP's numba compilation on a small input, on both map paths),
then the timed step with its resident memory sampled every 50 ms (``peak_rss_mb``; ``rss_before_mb`` is
the process before the step):

* ``kmeans``: :func:`~musiclust.analysis.clustering.cluster` with the production threshold — full k-means
  (n_init=10) up to and including 100k tracks;
* ``minibatch``: the same call forced onto the MiniBatchKMeans path (what runs above 100k), with its
  inertia beside full k-means' as a quality check;
* ``map``: :func:`~musiclust.analysis.clustering.umap_map` — at 100k the 20k-sample fit and the ``transform`` of
  the other 80k, timed apart (by timing UMAP's own two calls).

Upload latency: ``Service.analyse`` (decode + features + encode + cluster + map position + neighbours)
of a 30 s 44.1 kHz stereo WAV, as figure 2 calls it (in a script thread), on the real 490-track model
and on the same model serving the tiled 100k-track index (:func:`~bench.replicas.tile_bundle`),
the two calls alternated ``runs`` times after a warm-up call each; plus ``bundle.place`` alone (the part
that depends on the index size) and the resident memory the 100k index adds to the serving process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bench.common import Log, goal, make_variants, ratio, run_workers, summary

STEPS = ("kmeans", "minibatch", "map")
QUICK_SKIP = {"map": "not run in --quick: UMAP's numba compilation alone takes ~30 s a process"}
SPACE_JITTER = 0.05  # copies move by 5 % of each latent dimension's spread: near-duplicates, never equal
GOAL_P95_S = 0.300  # figure 2's goal for an upload answer, now with 100k tracks in the index


def synthetic_latents(n: int = 490, dim: int = 32, k: int = 7, seed: int = 0) -> tuple[np.ndarray, int]:
    """The stand-in when no model is trained: ``k`` Gaussian blobs, ``(n, dim)`` float32, and ``k``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (k, dim))
    return (centres[rng.integers(0, k, n)] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32), k


# --- in the benchmark worker process ------------------------------------------------------------------
def _inertia(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> float:
    return float(((x - centres[labels]) ** 2).sum())


def _timed_umap_calls() -> dict:
    """Wrap UMAP's ``fit_transform`` and ``transform`` so the map step can say how long each took."""
    import umap

    spent = {"fit_transform": 0.0, "transform": 0.0}
    for name in spent:
        original = getattr(umap.UMAP, name)

        def timed(self, *args, _original=original, _name=name, **kwargs):
            t = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - t

        setattr(umap.UMAP, name, timed)
    return spent


def measure_step(task: dict, ready: Callable[[], None]) -> dict:
    """One index step on the first ``n`` rows of the latents file, in this fresh process."""
    from musiclust.analysis import clustering
    from bench.memory import PeakRSS, max_rss_mb, rss_mb

    t0 = time.perf_counter()
    x = np.load(task["latents"])[: task["n"]]
    step, k, seed = task["step"], task["k"], task.get("seed", 0)
    fit_max = task.get("fit_max", clustering.UMAP_FIT_MAX)
    out: dict = {"step": step, "n": len(x)}
    if step == "map":
        import umap  # noqa: F401  (imported before timing: numba)

        spent = _timed_umap_calls()
        warm = np.load(task["latents"])[:3000]
        clustering.umap_map(warm[:300], seed=seed)  # the exact-neighbour path
        clustering.umap_map(warm, seed=seed, fit_max=2000)  # the sample + transform path
        for key in spent:
            spent[key] = 0.0
        out["path"] = clustering.map_kind(len(x), fit_max)
    else:
        import sklearn.cluster  # noqa: F401

        above = clustering.KMEANS_MAX_TRACKS if step == "kmeans" else 0
        clustering.cluster(x[: min(len(x), 2000)], k, "kmeans", seed, minibatch_above=above)  # warm-up
        out["path"] = clustering.kmeans_kind(len(x), above)
    out["setup_s"] = time.perf_counter() - t0
    ready()
    before = rss_mb()
    with PeakRSS() as mem:
        t = time.perf_counter()
        if step == "map":
            coords = clustering.umap_map(x, seed=seed, fit_max=fit_max)
        else:
            labels, centres = clustering.cluster(x, k, "kmeans", seed, minibatch_above=above)
        out["seconds"] = time.perf_counter() - t
    out.update(rss_before_mb=before, peak_rss_mb=mem.peak_mb, added_mb=mem.peak_mb - before, peak_pss_mb=mem.peak_pss_mb,
               max_rss_mb=max_rss_mb())
    if step == "map":
        out.update(umap_fit_s=spent["fit_transform"], umap_transform_s=spent["transform"],
                   fitted_on=min(len(x), fit_max) if out["path"] == "umap_sample_transform" else len(x),
                   finite=bool(np.isfinite(coords).all()))
    else:
        out.update(inertia=_inertia(x, labels, centres), sizes=np.bincount(labels, minlength=k).tolist())
    return out


def measure_upload(task: dict, ready: Callable[[], None]) -> dict:
    """Service.analyse against the real index and against the tiled one, alternated."""
    from bench.memory import rss_mb
    from bench.replicas import tile_bundle
    from musiclust.features.audio import load_audio
    from musiclust.features.mel import audio_features
    from musiclust.service import Service

    class TiledService(Service):
        """The app's service, whose model serves an index of ``n`` tracks tiled from its collection."""

        def __init__(self, dataset: str, root: Path, n: int):
            self.n = n
            super().__init__(dataset, root)

        def _load_bundle(self, name: str):
            return tile_bundle(super()._load_bundle(name), self.n, seed=0, space_jitter=SPACE_JITTER)

    data = Path(task["file"]).read_bytes()
    name, lyrics = task["model"], task.get("lyrics")
    small = Service(task["data"], Path(task["checkpoints"]))
    t = time.perf_counter()
    small.analyse(name, data, lyrics)
    first_small = time.perf_counter() - t
    before = rss_mb()
    big = TiledService(task["data"], Path(task["checkpoints"]), task["n"])
    t = time.perf_counter()
    big.analyse(name, data, lyrics)  # loads and tiles the model, computes the search norms: not timed below
    first_big = time.perf_counter() - t
    added = rss_mb() - before
    bundle_small, bundle_big = small.bundle(name), big.bundle(name)
    y = load_audio(data, bundle_small.feature_config)
    mel, vectors = audio_features(y, bundle_small.feature_config).mel_db, bundle_small.audio_vectors(y)
    ready()
    times = {"analyse_small": [], "analyse_big": [], "place_small": [], "place_big": []}
    answers = {}
    for i in range(task["runs"]):
        order = (("small", small, bundle_small), ("big", big, bundle_big))
        for tag, service, bundle in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            answers[tag] = service.analyse(name, data, lyrics)
            times[f"analyse_{tag}"].append(time.perf_counter() - t)
            t = time.perf_counter()
            bundle.place(mel, lyrics, pretrained=vectors)
            times[f"place_{tag}"].append(time.perf_counter() - t)
    return {
        "times": times,
        "first_call_s": {"small": first_small, "big": first_big},
        "tracks": {"small": len(bundle_small.tracks), "big": len(bundle_big.tracks)},
        "index_added_rss_mb": added,
        "index_array_mb": sum(a.nbytes for a in (bundle_big.space, bundle_big.labels, bundle_big.coords)) / 2**20,
        "same_cluster": answers["small"].placement.cluster == answers["big"].placement.cluster,
        "neighbours_big": [n.id for n in answers["big"].placement.neighbours],
    }


# --- in the benchmark's own process ------------------------------------------------------------------
def load_latents(checkpoints: Optional[Path], data: str, model: Optional[str]) -> dict:
    """The trained model's standardised latents and k, or the synthetic stand-in (and which it is)."""
    if checkpoints is not None and model:
        from musiclust.serving import checkpoint as ckpt
        from musiclust.service import dataset_slug

        c = ckpt.load(Path(checkpoints) / dataset_slug(data), model)
        return {"space": np.asarray(c.arrays["space"], np.float32), "k": int(c.meta.get("k") or len(c.arrays["centres"])),
                "unit_norm": bool(c.meta.get("space_unit_norm")), "source": f"trained {model} of {data!r} ({c.path.name})"}
    space, k = synthetic_latents()
    return {"space": space, "k": k, "unit_norm": False,
            "source": "synthetic stand-in: 7 Gaussian blobs, 490 x 32 (no trained model was found)"}


def run(n_big: int, log: Log, data: str = "default", checkpoints: Optional[Path] = None, model: Optional[str] = None,
        clip: Optional[Path] = None, lyrics: Optional[str] = None, runs: int = 30, fit_max: Optional[int] = None,
        steps: tuple = STEPS) -> dict:
    from bench.replicas import tile_rows
    from musiclust.analysis.clustering import UMAP_FIT_MAX

    src = load_latents(checkpoints, data, model)
    n_small = len(src["space"])
    fit_max = fit_max or UMAP_FIT_MAX
    out: dict = {"latents": src["source"], "k": src["k"], "dim": int(src["space"].shape[1]), "n_small": n_small, "n_big": n_big,
                 "space_jitter": SPACE_JITTER, "umap_fit_max": fit_max, "steps": {},
                 "skipped_steps": {s: QUICK_SKIP[s] for s in STEPS if s not in steps}}
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-index-") as tmp:
        path = Path(tmp) / "latents.npy"
        np.save(path, tile_rows(src["space"], n_big, SPACE_JITTER, seed=0, unit_norm=src["unit_norm"]))
        for n in (n_small, n_big):
            for step in steps:
                log(f"index: {step} on {n:,} tracks (fresh process)")
                r = run_workers([{"kind": "index_step", "step": step, "latents": str(path), "n": n, "k": src["k"], "fit_max": fit_max}])[0]
                out["steps"][f"{step}_{n}"] = r
        if checkpoints is None or not model:
            out["upload"] = {"skipped": "no trained model: upload latency needs one (`python -m musiclust train`)"}
        else:
            wav = make_variants([clip], Path(tmp) / "clip")["wav_44k_stereo"][0]
            log(f"index: upload -> answer with {n_small:,} and {n_big:,} tracks in the index, {runs} runs each, alternated")
            r = run_workers([{"kind": "index_upload", "data": data, "checkpoints": str(checkpoints), "model": model, "file": str(wav),
                              "lyrics": lyrics, "n": n_big, "runs": runs, "script_thread": True}], single_thread=False)[0]
            out["upload"] = _upload_summary(r)
    done = out["steps"]
    km, mb = done[f"kmeans_{n_big}"], done[f"minibatch_{n_big}"]
    index_peak = max(done[f"{s}_{n_big}"]["peak_rss_mb"] for s in steps)
    out["ratios"] = {
        f"{s}_{n_big}_vs_{n_small}_time": ratio(done[f"{s}_{n_big}"]["seconds"], done[f"{s}_{n_small}"]["seconds"]) for s in steps
    }
    out["ratios"]["minibatch_vs_kmeans_inertia"] = ratio(mb["inertia"], km["inertia"])
    out["ratios"]["minibatch_vs_kmeans_time"] = ratio(mb["seconds"], km["seconds"])
    out["index_peak_rss_mb"] = index_peak
    up = out["upload"]
    out["goals"] = {"p95": goal(f"upload p95 <= {GOAL_P95_S * 1000:.0f} ms with {n_big:,} tracks in the index"
                                + (f" ({up['analyse_big_s']['p95'] * 1000:.0f} ms)" if "skipped" not in up else " (not measured)"),
                                None if "skipped" in up else up["analyse_big_s"]["p95"] <= GOAL_P95_S)}
    return out


def _upload_summary(r: dict) -> dict:
    t = {k: summary(v) for k, v in r["times"].items()}
    return {
        "runs": t["analyse_big"]["n"],
        "tracks": r["tracks"],
        "analyse_small_s": t["analyse_small"],
        "analyse_big_s": t["analyse_big"],
        "place_small_s": t["place_small"],
        "place_big_s": t["place_big"],
        "analyse_big_vs_small_p50": ratio(t["analyse_big"]["p50"], t["analyse_small"]["p50"]),
        "place_extra_ms_p50": 1000 * (t["place_big"]["p50"] - t["place_small"]["p50"]),
        "first_call_s": r["first_call_s"],
        "index_added_rss_mb": r["index_added_rss_mb"],
        "index_array_mb": r["index_array_mb"],
        "same_cluster": r["same_cluster"],
        "neighbours_big": r["neighbours_big"],
    }
