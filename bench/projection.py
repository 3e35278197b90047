"""A projection on paper for a large library on a cluster (issue #7's closing note), from measured costs.

Nothing here measures: :func:`measured_costs` reads per-track costs out of a benchmark run's figures 7-9
(``dask``, ``index``, ``stream``), and :func:`project` scales them to ``tracks`` tracks on ``workers``
workers, each result with the arithmetic that produced it, so a reader can check or redo it. The model
behind each line is the simplest the measurements support, and says so:

* featurization is embarrassingly parallel (one partition per task, nothing shared but storage), so
  wall time = tracks x per-track worker time / workers, shown both ideal and with the parallel
  efficiency measured on 2 workers here; a worker holds one partition at a time, so its memory does
  not depend on the library size (the figure measures it at several N);
* store size, client memory, index arrays, training memory and the upload's search cost grow linearly
  in the number of tracks (the figures measure the slope between two sizes);
* MiniBatchKMeans' time is taken as linear in N (batches of 4,096 over the data); UMAP is fitted on a
  fixed 20k sample whatever N is, and the rest is placed by ``transform`` at the measured cost per track.

It assumes what the figures cannot show: that each worker gets a core as fast as this machine's, that
shared storage keeps up (the write rate is computed so that can be checked), and 30 s of audio
featurized per track (longer files are cut to 30 s before decoding ends; compressed formats decode
slower: figure 1).
"""

from __future__ import annotations

from typing import Optional


def _fmt(x: float) -> str:
    return f"{x:,.4g}"


def _item(value: float, unit: str, arithmetic: str) -> dict:
    return {"value": float(value), "unit": unit, "arithmetic": arithmetic}


def measured_costs(figures: dict) -> dict:
    """The per-track costs :func:`project` needs, from a run's ``figures`` (missing figures give missing keys)."""
    out: dict = {}
    d = figures.get("dask") or {}
    if d.get("rows") and "error" not in d:
        ones = sorted((r for r in d["rows"] if r["workers"] == 1), key=lambda r: r["n"])
        # the measured time per track at the largest N (1 worker), start-up excluded: not the linear fit's
        # slope, which a cost that rises with N (as measured here) pushes above every measured value
        out["feature_ms_per_track"] = ones[-1]["ms_per_track"]
        out["feature_sizes"] = [ones[0]["n"], ones[-1]["n"]]
        speed = (d["ratios"].get("speedup_2_vs_1_workers") or {}).get(str(ones[-1]["n"]))
        if speed:
            out["parallel_efficiency"] = speed / 2
        variant = {r["workers"]: r for r in d.get("malloc_variant") or []}
        if 1 in variant:
            out["feature_ms_per_track_unset_malloc"] = variant[1]["ms_per_track"]
        out["worker_peak_rss_mb"] = max(r["worker_peak_rss_mb"] for r in d["rows"])
        out["worker_peak_rss_mb_by_n"] = {r["n"]: r["worker_peak_rss_mb"] for r in ones}
        out["store_mb_per_track"] = ones[-1]["store_mb_per_track"]
        if len(ones) > 1:
            dn = ones[-1]["n"] - ones[0]["n"]
            out["client_mb_per_track"] = _growth((ones[-1]["client_peak_rss_mb"] - ones[0]["client_peak_rss_mb"]) / dn)
            out["client_peak_rss_mb"] = ones[-1]["client_peak_rss_mb"]
            out["client_n"] = ones[-1]["n"]
    ix = figures.get("index") or {}
    if ix.get("steps") and "error" not in ix:
        big, small, steps = ix["n_big"], ix["n_small"], ix["steps"]
        out["index_n"] = big
        out["latent_dim"] = ix["dim"]
        out["minibatch_s"] = steps[f"minibatch_{big}"]["seconds"]
        added = [steps[f"{s}_{big}"]["added_mb"] - steps[f"{s}_{small}"]["added_mb"] for s in ("kmeans", "minibatch", "map")
                 if f"{s}_{big}" in steps]
        out["index_step_mb_per_track"] = _growth(max(added) / (big - small))
        m = steps.get(f"map_{big}")
        if m and m["path"] == "umap_sample_transform":
            out["umap_fit_s"] = m["umap_fit_s"]
            out["umap_fit_tracks"] = m["fitted_on"]
            out["umap_transform_ms_per_track"] = 1000 * m["umap_transform_s"] / (big - m["fitted_on"])
        up = ix.get("upload") or {}
        if "skipped" not in up and up:
            out["upload_p50_s_small"] = up["analyse_small_s"]["p50"]
            out["upload_p50_s_big"] = up["analyse_big_s"]["p50"]
            out["place_ms_per_track"] = _growth((up["place_big_s"]["p50"] - up["place_small_s"]["p50"]) * 1000 / (big - small))
            out["serving_mb_per_track"] = _growth(up["index_added_rss_mb"] / big)
    st = figures.get("stream") or {}
    if st.get("rows") and "error" not in st and len(st["rows"]) > 1:
        out["train_peak_mb"] = st["rows"][-1]["peak_rss_mb"]
        out["train_n"] = st["rows"][-1]["n"]
        out["train_mb_per_track"] = _growth(st["peak_mb_per_1k_tracks"] / 1000)
    return out


def _growth(per_track: float) -> float:
    """A per-track growth measured between two sizes, floored at 0: memory and latency do not fall as
    tracks are added, so a negative difference (small quick-mode sizes, sampling noise) is no growth."""
    return max(0.0, float(per_track))


def project(m: dict, tracks: int = 1_000_000, workers: int = 20) -> dict:
    """Each projected figure with its unit and arithmetic; figures whose inputs were not measured are left out."""
    n, w = tracks, workers
    out: dict = {"tracks": n, "workers": w, "inputs": dict(m)}
    if "feature_ms_per_track" in m:
        t = m["feature_ms_per_track"]
        ideal = n * t / 1000 / w / 3600
        out["featurize_wall_h_ideal"] = _item(ideal, "h", f"{n:,} tracks x {_fmt(t)} ms / {w} workers = {_fmt(ideal)} h")
        if "parallel_efficiency" in m:
            e = m["parallel_efficiency"]
            out["featurize_wall_h_measured_efficiency"] = _item(
                ideal / e, "h", f"{_fmt(ideal)} h / {_fmt(e)} (2-worker speed-up / 2, measured) = {_fmt(ideal / e)} h")
        if "feature_ms_per_track_unset_malloc" in m:
            u = m["feature_ms_per_track_unset_malloc"]
            h = n * u / 1000 / w / 3600
            out["featurize_wall_h_unset_malloc"] = _item(
                h, "h", f"{n:,} x {_fmt(u)} ms (MALLOC_TRIM_THRESHOLD_ unset) / {w} workers = {_fmt(h)} h")
    if "worker_peak_rss_mb" in m:
        by_n = m.get("worker_peak_rss_mb_by_n") or {}
        seen = ", ".join(f"{_fmt(v)} MB at N={k:,}" for k, v in sorted(by_n.items(), key=lambda kv: int(kv[0])))
        out["memory_per_worker_mb"] = _item(m["worker_peak_rss_mb"], "MB",
                                            f"measured peak RSS of a worker, independent of N ({seen}): one partition at a time")
    if "client_mb_per_track" in m:
        c = m["client_peak_rss_mb"] + m["client_mb_per_track"] * (n - m["client_n"])
        out["client_memory_mb"] = _item(c, "MB", f"{_fmt(m['client_peak_rss_mb'])} MB at {m['client_n']:,} + "
                                                 f"{_fmt(m['client_mb_per_track'] * 1000)} MB per 1k tracks x {(n - m['client_n']) / 1000:,.0f}k = {_fmt(c)} MB")
    if "store_mb_per_track" in m:
        gb = n * m["store_mb_per_track"] / 1024
        out["store_gb"] = _item(gb, "GB", f"{n:,} x {_fmt(m['store_mb_per_track'])} MB = {_fmt(gb)} GB")
        wall = out.get("featurize_wall_h_measured_efficiency") or out.get("featurize_wall_h_ideal")
        if wall:
            rate = n * m["store_mb_per_track"] / (wall["value"] * 3600)
            out["store_write_mb_s"] = _item(rate, "MB/s", f"{_fmt(gb * 1024)} MB / {_fmt(wall['value'] * 3600)} s = {_fmt(rate)} MB/s onto shared storage")
    if "minibatch_s" in m:
        s = m["minibatch_s"] * n / m["index_n"]
        out["cluster_s"] = _item(s, "s", f"MiniBatchKMeans {_fmt(m['minibatch_s'])} s at {m['index_n']:,} x {n / m['index_n']:,.0f} (linear) = {_fmt(s)} s")
    if "umap_transform_ms_per_track" in m:
        s = m["umap_fit_s"] + m["umap_transform_ms_per_track"] * (n - m["umap_fit_tracks"]) / 1000
        out["map_s"] = _item(s, "s", f"UMAP fit on {m['umap_fit_tracks']:,} {_fmt(m['umap_fit_s'])} s + {_fmt(m['umap_transform_ms_per_track'])} ms x "
                                     f"{n - m['umap_fit_tracks']:,} transformed = {_fmt(s)} s")
    if "latent_dim" in m:
        mb = n * m["latent_dim"] * 4 / 2**20
        out["latents_mb"] = _item(mb, "MB", f"{n:,} x {m['latent_dim']} float32 = {_fmt(mb)} MB")
    if "index_step_mb_per_track" in m:
        mb = m["index_step_mb_per_track"] * n
        out["index_step_extra_mb"] = _item(mb, "MB", f"{_fmt(m['index_step_mb_per_track'] * 1000)} MB per 1k tracks (largest step's growth) x {n / 1000:,.0f}k = {_fmt(mb)} MB")
    if "place_ms_per_track" in m:
        q = m["upload_p50_s_small"] * 1000 + m["place_ms_per_track"] * n
        out["upload_p50_ms"] = _item(q, "ms", f"{_fmt(m['upload_p50_s_small'] * 1000)} ms at the collection's size + "
                                              f"{_fmt(m['place_ms_per_track'] * 1e6)} ns per track x {n:,} = {_fmt(q)} ms")
        sv = m["serving_mb_per_track"] * n
        out["serving_index_mb"] = _item(sv, "MB", f"{_fmt(m['serving_mb_per_track'] * 1000)} MB per 1k tracks x {n / 1000:,.0f}k = {_fmt(sv)} MB")
    if "train_mb_per_track" in m:
        p = m["train_peak_mb"] + m["train_mb_per_track"] * (n - m["train_n"])
        out["train_peak_mb"] = _item(p, "MB", f"{_fmt(m['train_peak_mb'])} MB at {m['train_n']:,} + {_fmt(m['train_mb_per_track'] * 1000)} MB per 1k tracks "
                                              f"x {(n - m['train_n']) / 1000:,.0f}k = {_fmt(p)} MB")
    return out


def lines(p: dict) -> list[str]:
    """The projection as ``name: arithmetic`` lines (for the table and the README)."""
    return [f"{k}: {v['arithmetic']}" for k, v in p.items() if isinstance(v, dict) and "arithmetic" in v]


def maybe_project(figures: dict, tracks: int = 1_000_000, workers: int = 20) -> Optional[dict]:
    """The projection when at least one of figures 7-9 was measured in this run, else None."""
    m = measured_costs(figures)
    return project(m, tracks, workers) if m else None
