"""Tables and computed arrays, cached per browser-independent key with ``st.cache_data``.

Every key names the data set, the checkpoints root, the model and its checkpoint version, so a
retrain's new version is a new entry; :func:`musiclust_app.sidebar.notice_finished_jobs` also clears
them all when a retrain succeeds. The work itself is the :class:`~musiclust.service.Service`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import streamlit as st

from musiclust.service import Morph, ReconstructionReport
from musiclust.serving.figures import with_hover_text
from musiclust.serving.vega import group_mix_spec, upload_map_spec, with_upload
from musiclust_app.state import Context, get_service

if TYPE_CHECKING:
    import pandas as pd


@st.cache_data(show_spinner=False, max_entries=16)
def _track_table(dataset: str, root: str, name: str, version: str) -> pd.DataFrame:
    return with_hover_text(get_service(dataset, root).track_table(name))


def tracks_of(ctx: Context, name: Optional[str] = None) -> pd.DataFrame:
    """The collection as model ``name`` (default: the one in use) places it, with escaped hover text."""
    name = name or ctx.model
    return _track_table(ctx.dataset, str(ctx.root), name, ctx.version(name))


@st.cache_data(show_spinner="Computing the spectrogram…", max_entries=64)
def _collection_mel(dataset: str, root: str, name: str, version: str, track_id: str) -> np.ndarray:
    return get_service(dataset, root).collection_mel(name, track_id)


def collection_mel(ctx: Context, track_id: str) -> np.ndarray:
    """The log-mel (dB) of a collection track, as the model in use computes features."""
    return _collection_mel(ctx.dataset, str(ctx.root), ctx.model, ctx.version(), track_id)


@st.cache_data(show_spinner="Reconstructing…", max_entries=64)
def _report(dataset: str, root: str, models: tuple, source: tuple, _mel_db: Optional[np.ndarray],
            lyrics: Optional[str], _audio: Optional[bytes] = None) -> ReconstructionReport:
    """``models`` = ((name, version), …); ``source`` = ("track", id) or ("upload", digest of the upload,
    whose bytes ``_audio`` give a model that reads MusiCNN vectors its input)."""
    names = [name for name, _ in models]
    service = get_service(dataset, root)
    if source[0] == "track":
        return service.reconstruction_report(names, track_id=source[1])
    return service.reconstruction_report(names, mel_db=_mel_db, lyrics=lyrics, audio=_audio)


def reconstruction_report(ctx: Context, names: Sequence[str], track_id: Optional[str] = None,
                          upload: Optional[dict] = None) -> ReconstructionReport:
    """Each model's reconstruction of a collection track, or of the last upload (``st.session_state["last_upload"]``)."""
    models = tuple((name, ctx.version(name)) for name in names)
    if upload is not None:
        return _report(ctx.dataset, str(ctx.root), models, ("upload", upload["digest"]), upload["mel_db"], upload.get("lyrics"),
                       upload.get("bytes"))
    return _report(ctx.dataset, str(ctx.root), models, ("track", track_id), None, None)


@st.cache_data(show_spinner="Walking the latent space…", max_entries=32)
def _morph(dataset: str, root: str, name: str, version: str, track_a: str, track_b: str, steps: int) -> Morph:
    return get_service(dataset, root).morph(name, track_a, track_b, steps)


def morph(ctx: Context, name: str, track_a: str, track_b: str, steps: int) -> Morph:
    """Model ``name``'s walk from track A to track B in ``steps`` decoded segments."""
    return _morph(ctx.dataset, str(ctx.root), name, ctx.version(name), track_a, track_b, steps)


@st.cache_data(show_spinner="Rendering audio from the spectrogram (Griffin-Lim)…", max_entries=64)
def _sonified(dataset: str, root: str, key: tuple, _mel_db: np.ndarray, name: str) -> np.ndarray:
    return get_service(dataset, root).sonify(name, _mel_db)


def sonified(ctx: Context, key: tuple, mel_db: np.ndarray) -> np.ndarray:
    """Audio from a dB log-mel (Griffin-Lim); ``key`` names what the mel is (track, model, version, length)."""
    return _sonified(ctx.dataset, str(ctx.root), key, mel_db, ctx.model)


@st.cache_resource(show_spinner=False, max_entries=8)
def _upload_map(dataset: str, root: str, name: str, version: str, height: int) -> dict:
    """The collection's map as a Vega-Lite spec, built once per model version (shared and never changed:
    :func:`draw_upload_map` wraps it with the upload's star)."""
    return upload_map_spec(_track_table(dataset, root, name, version), height=height)


def draw_upload_map(ctx: Context, coords: tuple[float, float], key: str, height: int = 460) -> None:
    """The model's map of the collection with the upload as a star (Vega-Lite: the answer's charts load
    its script, not Plotly's; musiclust.serving.vega says why)."""
    spec = _upload_map(ctx.dataset, str(ctx.root), ctx.model, ctx.version(), height)
    st.vega_lite_chart(with_upload(spec, coords), width="stretch", key=key)


@st.cache_resource(show_spinner=False, max_entries=64)
def _group_mix(dataset: str, root: str, name: str, version: str, cluster: int) -> Optional[dict]:
    card = get_service(dataset, root).cluster_card(name, cluster)
    return group_mix_spec(card.groups) if card is not None and card.groups else None


def group_mix(ctx: Context, cluster: int) -> Optional[dict]:
    """A cluster's group-mix bars as a Vega-Lite spec (``None`` without groups), built once per model
    version and cluster; read-only once built."""
    return _group_mix(ctx.dataset, str(ctx.root), ctx.model, ctx.version(), cluster)
