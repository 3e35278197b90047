"""The app's Plotly figures: spectrograms, reconstructions, a morph, the metric bars, clusters against
groups, training curves, the k sweep. The latent map is the core's (:mod:`musiclust.serving.figures`,
shared with the benchmark); the upload answer's charts are Vega-Lite (:mod:`musiclust.serving.vega`).
Plotly only: the pages place the figures.
"""

from __future__ import annotations

import html
import math
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sequential
from plotly.subplots import make_subplots

from musiclust.config import FeatureConfig
from musiclust.service import KChoice, MetricsTable, ModelInfo, Morph, ReconstructionReport
from musiclust.serving.figures import colour_for
from musiclust.serving.vega import mel_ticks

# Magma with its first stop written #000000: the browser's Plotly draws Magma's own #000004 (near black) as
# pink, a pink strip at the bottom of every colour bar and wherever a spectrogram is at its floor (seen in
# headless Chromium with and without Streamlit's theme; #000000 draws black).
MEL_COLOURSCALE = ["#000000", *sequential.Magma[1:]]
KIND_COLOUR = {"baseline": "#BAB0AC", "model": "#4C78A8", "conditioned": "#E45756"}
METRIC_LABELS = {
    "silhouette": "Silhouette", "calinski_harabasz": "Calinski-Harabasz", "davies_bouldin": "Davies-Bouldin",
    "stability": "Stability", "ari": "ARI", "nmi": "NMI", "purity": "Purity",
}


# --- spectrograms ------------------------------------------------------------------------------
def mel_axis(config: FeatureConfig, n_frames: int) -> tuple[np.ndarray, list[int], list[str]]:
    """Seconds per frame, and mel-band ticks labelled in Hz."""
    seconds = np.arange(n_frames) * config.hop_length / config.sample_rate
    return (seconds, *mel_ticks(config))


def mel_trace(mel_db: np.ndarray, config: FeatureConfig, coloraxis: Optional[str] = None, **kw) -> go.Heatmap:
    seconds, _, _ = mel_axis(config, mel_db.shape[1])
    extra = {"coloraxis": coloraxis} if coloraxis else {"colorscale": MEL_COLOURSCALE, "colorbar": dict(title="dB")}
    return go.Heatmap(z=mel_db.astype(np.float32), x=seconds, y=np.arange(mel_db.shape[0]),
                      hovertemplate="%{x:.2f} s · band %{y}<br>%{z:.1f} dB<extra></extra>", **extra, **kw)


def mel_figure(mel_db: np.ndarray, config: FeatureConfig, title: str = "", height: int = 300,
               zmin: Optional[float] = None, zmax: Optional[float] = None) -> go.Figure:
    _, ticks, labels = mel_axis(config, mel_db.shape[1])
    fig = go.Figure(mel_trace(mel_db, config, zmin=zmin, zmax=zmax))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      xaxis=dict(title="time (s)"), yaxis=dict(title="mel band", tickvals=ticks, ticktext=labels))
    return fig


def db_range(*mels: np.ndarray) -> tuple[float, float]:
    """One colour scale for several spectrograms: robust min/max over all of them."""
    values = np.concatenate([m.ravel() for m in mels])
    return float(np.percentile(values, 0.5)), float(np.percentile(values, 99.9))


def reconstruction_figure(report: ReconstructionReport, title: str, config: FeatureConfig) -> go.Figure:
    """The original above each model's reconstruction, cut to the frames all cover, on one dB scale."""
    width = report.width
    mels = [report.original_db[:, :width]] + [row.mel_db[:, :width] for row in report.all_rows]
    zmin, zmax = db_range(*mels)
    titles = [f"original · {html.escape(str(title))}"] + [f"{row.model} · MSE {row.mse_db:.1f} dB²" for row in report.all_rows]
    fig = make_subplots(rows=len(mels), cols=1, shared_xaxes=True, vertical_spacing=0.04, subplot_titles=titles)
    for i, mel in enumerate(mels, start=1):
        fig.add_trace(mel_trace(mel, config, coloraxis="coloraxis"), row=i, col=1)
    _, ticks, labels = mel_axis(config, width)
    fig.update_yaxes(tickvals=ticks, ticktext=labels)
    fig.update_xaxes(title_text="time (s)", row=len(mels), col=1)
    fig.update_layout(height=60 + 200 * len(mels), margin=dict(l=10, r=10, t=40, b=10),
                      coloraxis=dict(colorscale=MEL_COLOURSCALE, cmin=zmin, cmax=zmax, colorbar=dict(title="dB")))
    return fig


def morph_figure(morph: Morph, config: FeatureConfig) -> go.Figure:
    """The morph's spectrogram with a dotted line between steps."""
    fig = mel_figure(morph.mel_db, config, height=300)
    for step in range(1, morph.steps):
        fig.add_vline(x=step * morph.segment_seconds, line=dict(color="white", width=1, dash="dot"))
    return fig


# --- clusters and groups -----------------------------------------------------------------------
def contingency_height(frame: pd.DataFrame) -> int:
    """Height for a model's two side-by-side panels: one row per cluster."""
    return max(260, 34 * frame["cluster"].nunique() + 120)


def contingency_figure(frame: pd.DataFrame) -> go.Figure:
    """How many tracks of each group fall in each cluster (a clean clustering has one bright cell per row)."""
    counts = pd.crosstab(frame["cluster"], frame["group"])
    fig = go.Figure(go.Heatmap(
        z=counts.to_numpy(), x=[html.escape(str(g)) for g in counts.columns], y=[f"cluster {c}" for c in counts.index],
        colorscale="Blues", text=counts.to_numpy(), texttemplate="%{text}", colorbar=dict(title="tracks"),
        hovertemplate="%{y} · %{x}: %{z} tracks<extra></extra>",
    ))
    fig.update_layout(height=contingency_height(frame), margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(autorange="reversed"), xaxis=dict(title="group", tickangle=-30))
    return fig


# --- metrics and training ----------------------------------------------------------------------
def metric_figure(table: MetricsTable, metric: str) -> go.Figure:
    """One metric for every model and baseline, coloured by kind, ± one standard deviation over the seeds."""
    summary = table.summary
    fig = go.Figure()
    for kind in ("baseline", "model", "conditioned"):
        part = summary[summary["kind"] == kind]
        if len(part):
            spread = part[f"{metric}_std"].fillna(0.0)
            fig.add_trace(go.Bar(
                x=[html.escape(str(n)) for n in part["model"]], y=part[metric], customdata=spread,
                error_y=dict(type="data", array=spread, visible=True), name=kind, marker_color=KIND_COLOUR[kind],
                hovertemplate="%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>",
            ))
    better = "higher" if table.higher_is_better[metric] else "lower"
    fig.update_layout(
        title=dict(text=f"{METRIC_LABELS[metric]} ({better} is better)", font=dict(size=14)),
        height=300, margin=dict(l=10, r=10, t=40, b=10), showlegend=False, barmode="group", xaxis=dict(tickangle=-35),
    )
    return fig


def loss_columns(history: pd.DataFrame) -> list[str]:
    return [c for c in history.columns if c.startswith(("train_", "val_"))]


def log_scale(history: pd.DataFrame) -> bool:
    """Losses all positive: drawn on a log scale."""
    return bool((history[loss_columns(history)] > 0).all().all())


def training_curves_figure(model: ModelInfo, height: int) -> Optional[go.Figure]:
    """Training (solid) and validation (dotted) losses per epoch, the total shown and the terms one click
    away; a green line at the epoch whose weights were kept. ``None`` without a recorded history."""
    history = pd.DataFrame(model.history)
    if history.empty or "epoch" not in history:
        return None
    columns = loss_columns(history)
    terms = list(dict.fromkeys(c.split("_", 1)[1] for c in columns))
    fig = go.Figure()
    for column in columns:
        term = column.split("_", 1)[1]
        main = term == "loss"
        fig.add_trace(go.Scatter(
            x=history["epoch"], y=history[column], mode="lines+markers" if len(history) < 4 else "lines",
            name=column, legendgroup=term, visible=True if main else "legendonly",
            line=dict(width=3 if main else 1.5, dash="solid" if column.startswith("train_") else "dot",
                      color=colour_for(terms.index(term))),
        ))
    if model.best_epoch:
        fig.add_vline(x=model.best_epoch, line=dict(color="#54A24B", dash="dash"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="epoch", dtick=max(1, math.ceil(len(history) / 10))),
                      yaxis=dict(title="loss", type="log" if log_scale(history) else "linear"), legend=dict(font=dict(size=10)))
    return fig


def k_sweep_figure(choice: KChoice) -> go.Figure:
    """The k sweep's curve (criterion score per k) with the chosen k marked: a red star on the curve and
    a dashed line (at the k in use, which ``--k`` or the sidebar may have set off the sweep's pick)."""
    ks = [k for k, _ in choice.curve]
    scores = [None if math.isnan(v) else v for _, v in choice.curve]
    label = METRIC_LABELS.get(choice.criterion or "", (choice.criterion or "score").replace("_", " "))
    fig = go.Figure(go.Scatter(x=ks, y=scores, mode="lines+markers", name=label, line=dict(color=KIND_COLOUR["model"]),
                               hovertemplate="k = %{x}: %{y:.3f}<extra></extra>"))
    marked = dict(choice.curve).get(choice.k)
    if marked is not None and not math.isnan(marked):
        fig.add_trace(go.Scatter(x=[choice.k], y=[marked], mode="markers", name=f"chosen k = {choice.k}",
                                 marker=dict(symbol="star", size=16, color=KIND_COLOUR["conditioned"]),
                                 hovertemplate="chosen k = %{x}: %{y:.3f}<extra></extra>"))
    fig.add_vline(x=choice.k, line=dict(color=KIND_COLOUR["conditioned"], dash="dash"),
                  annotation_text=f"k = {choice.k}", annotation_position="top")
    better = "higher" if choice.higher_is_better else "lower"
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      xaxis=dict(title="k (clusters)", dtick=1 if len(ks) <= 15 else 2),
                      yaxis=dict(title=f"{label} ({better} is better)"))
    return fig
