"""Small Streamlit building blocks the pages share: players, playlist downloads, a cluster's card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from musiclust.config import FeatureConfig
from musiclust_app.figures import group_mix_figure
from musiclust_app.state import Context
from musiclust_app.text import csv_playlist, m3u_playlist, md, track_line

UPLOAD_TYPES = ["wav", "flac", "ogg", "mp3"]
MAX_UPLOAD_MB = 50  # as server.maxUploadSize in .streamlit/config.toml and the service's limit
AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


def play_track(path: str) -> None:
    """A player for a collection file (paths come from the checkpoint, never from a visitor)."""
    p = Path(path)
    if not p.is_file():
        st.caption(f"(audio file missing: {md(p.name)})")
        return
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
    card = ctx.service.cluster_card(ctx.model, cluster)
    if card is None:
        st.caption("This checkpoint has no cluster description.")
        return
    st.markdown(f"{card.size} tracks · {card.with_lyrics} with lyrics")
    if card.groups:
        st.plotly_chart(group_mix_figure(card.groups), key=f"{key}_mix", config={"displayModeBar": False})
    terms = ", ".join(md(t) for t in card.top_terms)
    st.markdown("**Top lyric terms:** " + (terms or "_none (no lyrics in this cluster)_"))
    if card.typical is not None:
        t = card.typical
        st.markdown("**Most typical track** (nearest the centre): " + track_line(t.title, t.artist, t.group))
        play_track(t.path)
