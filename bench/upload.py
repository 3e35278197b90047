"""Figure 2: upload -> answer, server side, as the app's upload page does it.

``Service.analyse(model, file bytes, lyrics)``: decode + validate + features + encode + cluster + map
position + neighbours for a 30 s clip, in a fresh process with the app's default threading, called from
a non-main thread as Streamlit calls a page. The first
call after the process starts is the cold start (imports, model load, first inference). Then every
model is warm and each of ``runs`` calls is followed, on the same bytes, by the two references: the floor
(soundfile + bare rFFT) and librosa's defaults (load + melspectrogram). A stage breakdown (decode,
features, encode, the rest of placing) comes from separate runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

from bench.common import Log, goal, make_variants, ratio, run_workers, summary

GOAL_P95_S = 0.300
def ordered_models(models: Sequence[str]) -> list[str]:
    """``models`` in the app's display order (its default first)."""
    from musiclust.models.registry import DISPLAY_ORDER

    return sorted(models, key=lambda m: DISPLAY_ORDER.index(m) if m in DISPLAY_ORDER else len(DISPLAY_ORDER))


def _summarise(raw: dict) -> dict:
    out = {}
    for name, r in raw["models"].items():
        warm, floor, lib = summary(r["warm"]), summary(r["floor"]), summary(r["librosa"])
        out[name] = {
            "warm_s": warm,
            "reference_floor_s": floor,
            "reference_librosa_s": lib,
            "stages_s": r["stages"],
            "p50_vs_floor": ratio(warm["p50"], floor["p50"]),
            "p50_vs_librosa": ratio(warm["p50"], lib["p50"]),
        }
    return out


def run(clip: Path, data: str, checkpoints: Path, models: Sequence[str], runs: int, log: Log, lyrics: Optional[str] = None) -> dict:
    models = ordered_models(models)
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-upload-") as tmp:
        variants = make_variants([clip], Path(tmp))
        base = {"kind": "upload", "data": data, "checkpoints": str(checkpoints), "runs": runs, "lyrics": lyrics, "script_thread": True}
        log(f"upload: {len(models)} model(s) x {runs} runs on a 30 s 44.1 kHz stereo WAV (cold start first)")
        wav = run_workers([{**base, "file": str(variants["wav_44k_stereo"][0]), "models": models}], single_thread=False)[0]
        log(f"upload: {models[0]} x {runs} runs on the same clip as MP3")
        mp3 = run_workers([{**base, "file": str(variants["mp3"][0]), "models": models[:1]}], single_thread=False)[0]
    per_model = _summarise(wav)
    head = models[0]
    p95 = per_model[head]["warm_s"]["p95"]
    worst_p95 = max(m["warm_s"]["p95"] for m in per_model.values())
    mp3_head = _summarise(mp3)[head]
    cold = wav["cold"]
    return {
        "clip": clip.name,
        "lyrics": bool(lyrics),
        "runs": runs,
        "default_model": head,
        "wav_44k_stereo": per_model,
        "mp3": {head: mp3_head},
        "cold_start": {
            **cold,
            "first_call_vs_warm_p50": ratio(cold["first_call_s"], per_model[cold["model"]]["warm_s"]["p50"]),
        },
        "goals": {
            "p95": goal(f"p95 <= {GOAL_P95_S * 1000:.0f} ms ({head}: {p95 * 1000:.0f} ms; slowest model {worst_p95 * 1000:.0f} ms)", worst_p95 <= GOAL_P95_S),
        },
    }
