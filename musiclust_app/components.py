"""Small Streamlit building blocks the pages share: players, playlist downloads, a cluster's card."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import streamlit as st

from musiclust import paths
from musiclust.config import FeatureConfig
from musiclust.service import PREVIEW_MIME, ready_preview
from musiclust.serving.firstrun import BuildPlan, auto_build_enabled, ensure_first_build, model_order, plan
from musiclust.serving.jobs import FAILED, RUNNING
from musiclust_app.state import Context, jobs
from musiclust_app.text import csv_playlist, first_run_text, m3u_playlist, md, outcome_reason, track_line

if TYPE_CHECKING:
    import pandas as pd

UPLOAD_TYPES = ["wav", "flac", "ogg", "mp3"]
MAX_UPLOAD_MB = 50  # as server.maxUploadSize in .streamlit/config.toml and the service's limit
# What the models hear of a long upload (the feature config new models are trained with).
EXCERPT_HELP = FeatureConfig().excerpt_description
AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


def play_track(path: str, preview: Optional[FeatureConfig] = None) -> None:
    """A player for a collection file (paths come from the checkpoint, never from a visitor). With
    ``preview`` (the model's feature config) it plays the small MP3 of what the model heard once that
    exists (made in the background on first sight: :func:`musiclust.service.ready_preview`), else the file."""
    p = Path(path)
    if not p.is_file():
        st.caption(f"(audio file missing: {md(p.name)})")
        return
    small = ready_preview(p, preview) if preview is not None else None
    if small is not None:
        st.audio(str(small), format=PREVIEW_MIME)
    else:
        st.audio(str(p), format=AUDIO_MIME.get(p.suffix.lower(), "audio/wav"))


def play_audio(audio: np.ndarray, config: FeatureConfig) -> None:
    """A player for rendered audio (float samples at the features' sample rate)."""
    st.audio(np.asarray(audio, dtype=np.float32), sample_rate=config.sample_rate)


def playlist_buttons(rows: pd.DataFrame, stem: str, key: str) -> None:
    """Download ``rows`` as an M3U playlist and as CSV."""
    a, b = st.columns(2)
    a.download_button("Download M3U playlist", m3u_playlist(rows), file_name=f"{stem}.m3u", mime="audio/x-mpegurl",
                      key=f"{key}_m3u", width="stretch", icon=":material/queue_music:")
    b.download_button("Download CSV", csv_playlist(rows), file_name=f"{stem}.csv", mime="text/csv",
                      key=f"{key}_csv", width="stretch", icon=":material/table:")


def cluster_card(ctx: Context, cluster: int, key: str) -> None:
    """A cluster's size, group mix, top lyric terms and most typical track (playable)."""
    from musiclust_app.caches import group_mix

    card = ctx.service.cluster_card(ctx.model, cluster)
    if card is None:
        st.caption("This checkpoint has no cluster description.")
        return
    st.markdown(f"{card.size} tracks · {card.with_lyrics} with lyrics")
    mix = group_mix(ctx, cluster)
    if mix is not None:
        st.vega_lite_chart(mix, width="stretch", key=f"{key}_mix")
    terms = ", ".join(md(t) for t in card.top_terms)
    st.markdown("**Top lyric terms:** " + (terms or "_none (no lyrics in this cluster)_"))
    if card.typical is not None:
        t = card.typical
        st.markdown("**Most typical track** (nearest the centre): " + track_line(t.title, t.artist, t.group))
        play_track(t.path, preview=ctx.service.model(ctx.model).feature_config)


# --- the first run: the default set and its models built behind the app ---------------------------
FIRST_RUN_DATASETS = ("default", "default:natural")


@st.cache_resource(show_spinner=False)
def _start_first_build(jobs_dir: str, checkpoints: str) -> bool:
    """Ask for the background build once per server process (the retrain lock stops a second one)."""
    return ensure_first_build(jobs(), "natural", Path(checkpoints))


def first_run_plan(ctx: Context) -> Optional[BuildPlan]:
    """What the first run still has to build for the data set shown (``None``: not the default set, or done).

    Cheap (file checks, no decoding), so every page load asks; the build itself is started once per process."""
    if ctx.dataset not in FIRST_RUN_DATASETS or not auto_build_enabled():
        return None
    todo = plan("natural", ctx.root)
    if todo.done:
        return None
    _start_first_build(str(paths.jobs_dir()), str(ctx.root))
    return todo


def first_run_panel(ctx: Context) -> None:
    """On every page while the default set is being built: what is being built and the time left.

    Refreshes every second; when a model lands (or the build ends) the whole page reruns, so a page
    waiting for a model offers it at once."""
    todo = first_run_plan(ctx)
    if todo is not None:
        _first_run_progress(str(ctx.root), len(todo.models_missing))


@st.fragment(run_every=1)
def _first_run_progress(root: str, models_missing: int) -> None:
    status = jobs().status()
    todo = plan("natural", Path(root))
    if todo.done or len(todo.models_missing) != models_missing or status.state != RUNNING:
        if status.state == FAILED:
            st.error(f"Building the default set failed: {md(outcome_reason(status.message, 'failed'))}. "
                     "Reload the page to try again.", icon=":material/error:")
            return
        if todo.done or len(todo.models_missing) != models_missing:
            st.rerun(scope="app")
    with st.container(border=True, key="first_run_panel"):
        st.markdown("**Setting up the default set** (first run only): the pages open as soon as what they need exists.")
        st.progress(status.fraction if status.state == RUNNING else 0.0,
                    text=first_run_text(status) if status.state == RUNNING else "Starting the build…")
        trained = len(model_order()) - len(todo.models_missing)
        if status.phase == "train" and trained:
            st.caption(f"{trained} model{'s' if trained != 1 else ''} ready; the others follow.")


def waiting_for_first_model(ctx: Context) -> bool:
    """True (and the page should stop) while the first run has not yet saved a model for this page;
    the progress panel above says what is happening instead of an error."""
    if ctx.model is not None or first_run_plan(ctx) is None:
        return False
    st.info("This page opens as soon as the first model is saved (progress above); nothing to do meanwhile.",
            icon=":material/hourglass_top:")
    return True
