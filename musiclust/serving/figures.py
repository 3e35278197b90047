"""The collection's latent map as a Plotly figure: what the app's pages draw and the benchmark measures.

Plotly only (no Streamlit), so the benchmark builds exactly the figure the app serves without importing
the app. The map takes a track table (:meth:`musiclust.service.Service.track_table`) with the hover
columns of :func:`with_hover_text`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # imported where a figure is built: a page that draws none (the first one) needs neither
    import pandas as pd
    import plotly.graph_objects as go

CLUSTER_COLOURS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6", "#BAB0AC",
    "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF", "#AEC7E8",
)
HOVER_COLUMNS = ("title", "artist", "group")

# Above this many points the map draws a seeded sample of them over a density layer of all of them. In
# headless Chromium with software WebGL (benchmark figure 5) 10,000 points drew in 2.8 s and panned at
# 55 ms a step (smooth: within 33 ms of the 490-point map), 100,000 took 5.7 s and 228 ms a step.
MAP_MAX_POINTS = 10_000
# Below this many points the map is SVG, not WebGL. A browser without a GPU (headless Chromium's software
# WebGL) pays for a WebGL context before the first point: with the map as the upload page's only chart (then Plotly),
# the answer on a 194-track map was complete in 1.33 s with SVG against 1.55 s with WebGL (bench figure
# 10, p50 of 6 uploads, quiet machine, 2026-12-04), and SVG pans a few hundred points as smoothly.
# Thousands of points need WebGL.
MAP_SVG_MAX_POINTS = 1_000
DENSITY_BINS = 120


def colour_for(i: int) -> str:
    return CLUSTER_COLOURS[i % len(CLUSTER_COLOURS)]


def marker_size(n: int) -> int:
    """Points big enough to click in a small collection, small enough to see structure in a large one."""
    return 10 if n < 300 else 7 if n < 1500 else 5 if n < 5000 else 3


def with_hover_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus ``title_html``, ``artist_html`` and ``group_html``: hover text escaped once per table,
    not once per figure (titles come from files and people)."""
    out = frame.copy()
    for column in HOVER_COLUMNS:
        out[f"{column}_html"] = [html.escape(str(v)) for v in out[column]]
    return out


def map_sample(frame: pd.DataFrame, max_points: Optional[int] = MAP_MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """The rows the map draws as points: all of them up to ``max_points``, else a seeded uniform sample
    (the same one on every rerun, so the chart and a clicked point stay put)."""
    if max_points is None or len(frame) <= max_points:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[rows]


def map_note(shown: int, total: int) -> Optional[str]:
    """What the page says when the map draws a sample; None when every track is a point."""
    if shown >= total:
        return None
    return f"showing {shown:,} of {total:,} tracks as points (a fixed random sample); the grey shading is the density of all {total:,}"


def density_trace(xs: np.ndarray, ys: np.ndarray, bins: int = DENSITY_BINS) -> go.Heatmap:
    """Every track of a large map as a 2-D histogram (``bins`` x ``bins`` counts, empty cells transparent):
    ~15k numbers to send whatever the collection's size. No ``customdata``, so a click on it selects no track."""
    import plotly.graph_objects as go

    counts, xe, ye = np.histogram2d(xs, ys, bins=bins)  # (bins, bins)
    z = np.where(counts > 0, np.log1p(counts), np.nan).T  # (y, x), log so sparse regions still show
    return go.Heatmap(
        x=(xe[:-1] + xe[1:]) / 2, y=(ye[:-1] + ye[1:]) / 2, z=z, text=counts.T.astype(int), colorscale="Greys",
        showscale=False, opacity=0.45, zsmooth=False, hovertemplate="%{text} tracks here<extra></extra>", name="density",
    )


def display_mel(mel_db: np.ndarray, max_frames: int = 480) -> tuple[np.ndarray, int]:
    """A log-mel (dB, ``(n_mels, T)``) averaged over runs of frames so at most ``max_frames`` columns remain,
    and the run length. What a page shows of a 30-s track: 1,292 frames x 128 bands is ~1.1 MB of heatmap
    JSON for the browser to parse and draw, more than a screen can show; 480 columns keep its shape."""
    n_mels, frames = mel_db.shape
    step = max(1, -(-frames // max_frames))
    if step == 1:
        return mel_db, 1
    usable = frames // step * step
    pooled = mel_db[:, :usable].reshape(n_mels, usable // step, step).mean(axis=2)
    if usable < frames:
        pooled = np.concatenate([pooled, mel_db[:, usable:].mean(axis=1, keepdims=True)], axis=1)
    return np.round(pooled, 1).astype(np.float32), step


def map_figure(frame: pd.DataFrame, colour_by: str = "cluster", marker_size: int = 6, height: int = 560,
               max_points: Optional[int] = MAP_MAX_POINTS) -> go.Figure:
    """The collection's UMAP map, one trace per colour (no per-point Python loop; SVG below
    :data:`MAP_SVG_MAX_POINTS` points drawn, else WebGL); ids in ``customdata``.

    Above ``max_points`` tracks it draws :func:`map_sample` over :func:`density_trace` of every track, says
    so in the figure (:func:`map_note`), and trims each point's hover data to its id and title (the group
    or cluster is the trace's name; a click shows the rest): at 100,000 tracks 83 % of the payload was
    per-point hover data."""
    import pandas as pd
    import plotly.graph_objects as go

    total = len(frame)
    points = map_sample(frame, max_points)
    sampled = len(points) < total
    values = points[colour_by].to_numpy()
    columns = ["id", "title_html"] if sampled else ["id", "title_html", "artist_html", "group_html", "cluster"]
    custom = np.column_stack([points[c].to_numpy(dtype=object) for c in columns])  # (n, len(columns))
    hover = ("<b>%{customdata[1]}</b><extra>%{fullData.name}</extra>" if sampled else
             "<b>%{customdata[1]}</b><br>%{customdata[2]}<br>group: %{customdata[3]} · cluster %{customdata[4]}<extra></extra>")
    xs, ys = points["x"].to_numpy(), points["y"].to_numpy()
    scatter = go.Scatter if len(points) < MAP_SVG_MAX_POINTS else go.Scattergl
    fig = go.Figure()
    if sampled:
        fig.add_trace(density_trace(frame["x"].to_numpy(), frame["y"].to_numpy()))
    levels = sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))
    for i, level in enumerate(levels):
        mask = values == level
        name = f"cluster {level}" if colour_by == "cluster" else str(level)
        fig.add_trace(scatter(
            x=xs[mask], y=ys[mask], mode="markers", name=html.escape(name), customdata=custom[mask],
            marker=dict(size=marker_size, color=colour_for(int(level) if colour_by == "cluster" else i), opacity=0.8,
                        line=dict(width=0)),
            hovertemplate=hover,
        ))
    note = map_note(len(points), total)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=1.0, yanchor="bottom", xanchor="left",
                           showarrow=False, font=dict(size=12, color="#555555"))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(itemsizing="constant", title_text=""),
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False), dragmode="pan",
    )
    return fig
