"""A benchmark worker: ``python -m bench.worker '<task JSON>'``.

It pins itself to the CPU it is given, imports and warms up, prints ``ready``, waits for ``go`` on stdin
(so that several workers start at the same moment), does the task and prints one line of JSON. Running
each measurement in its own process keeps the benchmark's own memory and threads out of the figures.
"""

from __future__ import annotations

import json
import os
import sys
import time

STARTED = time.monotonic()  # before any heavy import: the cold-start figure counts from here


def _pin(cpu) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        cpus = [cpu] if isinstance(cpu, int) else list(cpu)
        os.sched_setaffinity(0, [c % os.cpu_count() for c in cpus])


def _ready() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(1)


def featurize(task: dict) -> dict:
    """Per clip, each implementation in turn (rotating the order), so noise hits them all alike.

    ``files`` is a list, or ``{format: list}`` to run several input formats in one process (one after
    the other); times come back per format (a plain list is format ``"_"``)."""
    from bench.featurization import IMPLEMENTATIONS, choose_floor_fft

    groups = task["files"] if isinstance(task["files"], dict) else {"_": task["files"]}
    groups = {fmt: files for fmt, files in groups.items() if files}
    extra = task.get("extra_impls", {})  # impl -> the formats it is timed on
    impls = {fmt: task["impls"] + [name for name, fmts in extra.items() if fmt in fmts] for fmt in groups}
    first = next(iter(groups.values()))[0]
    fft = choose_floor_fft(first) if "floor" in task["impls"] else None
    functions = {name: IMPLEMENTATIONS[name] for names in impls.values() for name in names}
    for fmt, files in groups.items():  # warm-up: imports, filter banks, FFT plans, each decoder
        for name in impls[fmt]:
            functions[name](files[0], fft=fft)
    _ready()
    times = {fmt: {name: [] for name in impls[fmt]} for fmt in groups}
    cpu = {fmt: {name: [] for name in impls[fmt]} for fmt in groups}  # thread CPU time: what other work on a busy machine does not inflate
    start = time.monotonic()
    for fmt, files in groups.items():
        order = impls[fmt]
        for r in range(task.get("rounds", 1)):
            for i, path in enumerate(files):
                k = (i + r) % len(order)
                for name in order[k:] + order[:k]:
                    c, t = time.thread_time(), time.perf_counter()
                    functions[name](path, fft=fft)
                    times[fmt][name].append(time.perf_counter() - t)
                    cpu[fmt][name].append(time.thread_time() - c)
    end = time.monotonic()
    return {"times": times, "cpu": cpu, "start": start, "end": end, "floor_fft": fft, "cpus": sorted(os.sched_getaffinity(0))}


def upload(task: dict) -> dict:
    """Server side of an upload, as the app does it: ``Service.analyse(model, bytes, lyrics)``.

    The first call in this fresh process is the cold start (imports, model load, first inference); then
    ``runs`` warm calls, each followed by the two references on the same bytes (floor and librosa)."""
    from pathlib import Path

    t0 = time.monotonic()
    from musiclust.service import Service  # noqa: E402  (timed: part of a cold start)

    imported = time.monotonic()
    from bench.featurization import IMPLEMENTATIONS, choose_floor_fft

    data = Path(task["file"]).read_bytes()
    service = Service(task["data"], Path(task["checkpoints"]))
    models = task["models"]
    cold = {}
    first = models[0]
    t = time.monotonic()
    service.analyse(first, data, task.get("lyrics"))
    cold = {
        "process_start_to_import_s": imported - STARTED,
        "import_s": imported - t0,
        "first_call_s": time.monotonic() - t,
        "model": first,
    }
    fft = choose_floor_fft(task["file"])
    floor, lib = IMPLEMENTATIONS["floor"], IMPLEMENTATIONS["librosa"]
    floor(task["file"], fft=fft)
    lib(task["file"])
    for name in models[1:]:
        service.analyse(name, data, task.get("lyrics"))  # load every model before timing
    _ready()
    result = {"cold": cold, "models": {}, "floor_fft": fft}
    for name in models:
        warm, ref_floor, ref_lib = [], [], []
        for _ in range(task["runs"]):
            t = time.perf_counter()
            service.analyse(name, data, task.get("lyrics"))
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            floor(task["file"], fft=fft)
            ref_floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            lib(task["file"])
            ref_lib.append(time.perf_counter() - t)
        result["models"][name] = {"warm": warm, "floor": ref_floor, "librosa": ref_lib, "stages": _stages(service, name, data, task)}
    return result


def _stages(service, name: str, data: bytes, task: dict) -> dict:
    """Where an answer's time goes: decode, features, encode, and cluster + map + neighbours."""
    import numpy as np

    from musiclust.features.audio import load_audio
    from musiclust.features.mel import log_mel, mfcc_statistics
    from musiclust.service import clean_user_lyrics

    bundle = service.bundle(name)
    cfg = bundle.feature_config
    lyrics = clean_user_lyrics(task.get("lyrics"))
    stages = {"decode": [], "features": [], "encode": [], "place_rest": []}
    for _ in range(max(3, task["runs"] // 5)):
        t = time.perf_counter()
        y = load_audio(data, cfg)
        t1 = time.perf_counter()
        mel = log_mel(y, cfg)
        mfcc_statistics(mel, cfg.n_mfcc, cfg.features_version)
        vectors = bundle.audio_vectors(y)  # a model that reads MusiCNN vectors: their extraction is a feature (else None)
        t2 = time.perf_counter()
        bundle.raw_embedding([mel], [lyrics], None if vectors is None else [vectors])
        t3 = time.perf_counter()
        bundle.place(mel, lyrics, pretrained=vectors)  # encodes again: the rest is place() minus one encoding
        t4 = time.perf_counter()
        stages["decode"].append(t1 - t)
        stages["features"].append(t2 - t1)
        stages["encode"].append(t3 - t2)
        stages["place_rest"].append(max(0.0, (t4 - t3) - (t3 - t2)))
    return {k: float(np.median(v)) for k, v in stages.items()}


def scaling(task: dict) -> dict:
    """``FeatureStore.get_many`` over ``files`` with ``jobs`` workers into a fresh cache; peak memory of the tree."""
    from pathlib import Path

    from bench.memory import PeakRSS
    from musiclust.features.mel import FeatureStore

    store = FeatureStore(Path(task["cache"]))
    _ready()
    with PeakRSS() as mem:
        t = time.perf_counter()
        report = store.get_many([Path(p) for p in task["files"]], jobs=task["jobs"], progress=lambda d, n: None)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "computed": report.computed, "cached": report.cached, "failed": len(report.failed),
            "peak_rss_mb": mem.peak_mb, "peak_pss_mb": mem.peak_pss_mb}


def torch_reference(task: dict) -> dict:
    """A fixed torch workload (conv forward + backward + Adam on a 64 x 1 x 128 x 128 batch, like one
    training batch of the conv models) with torch's default threads: the machine's speed right now."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 4, 4), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64 * 8 * 8, 64),
        nn.Linear(64, 64 * 8 * 8), nn.Unflatten(1, (64, 8, 8)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.ConvTranspose2d(16, 1, 4, 4),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(64, 1, 128, 128)

    def step() -> None:
        loss = ((net(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _ready()
    times = []
    for _ in range(task.get("steps", 20)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"times": times, "threads": torch.get_num_threads()}


def _from(module: str, function: str):
    """A task whose body lives in its figure's module (issue #7's scale figures); it is given ``_ready``."""
    def task_fn(task: dict) -> dict:
        import importlib

        return getattr(importlib.import_module(f"bench.{module}"), function)(task, _ready)

    return task_fn


TASKS = {
    "featurize": featurize, "upload": upload, "scaling": scaling, "torch_reference": torch_reference,
    "dask_featurize": _from("dask_scaling", "measure"), "dask_serial": _from("dask_scaling", "serial_reference"),
    "index_step": _from("index_scale", "measure_step"), "index_upload": _from("index_scale", "measure_upload"),
    "stream_train": _from("stream_training", "measure"),
    "analyse_loop": _from("answer", "serve_analyses"),
}


def _in_thread(fn, task: dict) -> dict:
    """Run ``fn(task)`` in a fresh thread, as Streamlit runs a page (a script thread, not the main one):
    torch's threading behaves differently there, so an upload is measured where the app answers it."""
    import threading

    out: dict = {}

    def body() -> None:
        try:
            out["result"] = fn(task)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            out["error"] = exc

    thread = threading.Thread(target=body, name="ScriptRunner.scriptThread")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def main() -> None:
    task = json.loads(sys.argv[1])
    _pin(task.get("cpu"))
    fn = TASKS[task["kind"]]
    result = _in_thread(fn, task) if task.get("script_thread") else fn(task)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
