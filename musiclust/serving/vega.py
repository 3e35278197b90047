"""The upload answer's charts as Vega-Lite specs: plain dicts for ``st.vega_lite_chart``.

Why not Plotly, as on the other pages: a visit's first chart makes the browser load and evaluate the chart
library's script, and the upload's answer is where a person waits. Over a page that draws no chart, a
Plotly scatter and bar chart with a spectrogram image cost 0.93 s of a quiet 2-core machine (headless
Chromium), the same with Vega-Lite 0.37 s (p50 of 6 fresh visits each, same run, 2026-12-05; the answer
itself is benchmark figure 10, docs/benchmark.md). The explorer keeps Plotly for its click and lasso selections.

Vega-Lite's tooltips escape what they show, so titles go in as they are. The spectrogram is a PNG
(Pillow) laid on the chart's axes: 480 x 128 cells as Vega marks took seconds to draw.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Optional

import numpy as np

from musiclust.serving.figures import DENSITY_BINS, MAP_MAX_POINTS, colour_for, map_note, map_sample, marker_size

if TYPE_CHECKING:
    import pandas as pd

    from musiclust.config import FeatureConfig

# A five-pointed star in Vega's unit square (a custom ``shape`` path): the upload's mark on the map.
STAR = ("M0,-1L0.235,-0.324L0.951,-0.309L0.38,0.124L0.588,0.809L0,0.4L-0.588,0.809L-0.38,0.124L-0.951,-0.309"
        "L-0.235,-0.324Z")
UMAP_AXIS = {"labels": False, "ticks": False, "domain": False, "grid": False}  # as the explorer: positions, no units
MEL_SCHEME = "magma"  # Vega's own scheme for the legend; the image uses Plotly's stops of the same map


def upload_map_spec(frame: pd.DataFrame, height: int = 460, max_points: Optional[int] = MAP_MAX_POINTS) -> dict:
    """The collection's map coloured by cluster, without the upload (:func:`with_upload` adds it).

    Like :func:`musiclust.serving.figures.map_figure`: above ``max_points`` tracks a fixed sample is drawn
    over the density of all of them (at most ``DENSITY_BINS``² cells, whatever the collection's size), and
    a note says so; the sample's tooltips carry the title only."""
    points = map_sample(frame, max_points)
    sampled = len(points) < len(frame)
    clusters = sorted(int(c) for c in points["cluster"].unique())
    columns = ["x", "y", "cluster", "title"] if sampled else ["x", "y", "cluster", "title", "artist", "group"]
    values = points[columns].astype({"x": float, "y": float, "cluster": int}).to_dict("records")
    tooltip = [{"field": "title", "title": "track"}]
    if not sampled:
        tooltip += [{"field": "artist"}, {"field": "group"}]
    tooltip.append({"field": "cluster"})
    layers = []
    if sampled:
        layers.append(density_layer(frame["x"].to_numpy(), frame["y"].to_numpy()))
    layers.append({
        "data": {"values": values},
        "mark": {"type": "circle", "size": marker_size(len(frame)) ** 2, "opacity": 0.8},
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "title": "UMAP 1", "axis": UMAP_AXIS, "scale": {"zero": False}},
            "y": {"field": "y", "type": "quantitative", "title": "UMAP 2", "axis": UMAP_AXIS, "scale": {"zero": False}},
            "color": {"field": "cluster", "type": "nominal", "title": "cluster",
                      "scale": {"domain": clusters, "range": [colour_for(c) for c in clusters]}},
            "tooltip": tooltip,
        },
    })
    spec = {"height": height, "layer": layers, "config": {"view": {"stroke": None}}}
    note = map_note(len(points), len(frame))
    if note:
        spec["title"] = {"text": note, "fontSize": 12, "fontWeight": "normal", "color": "#555555", "anchor": "start"}
    return spec


def density_layer(xs: np.ndarray, ys: np.ndarray, bins: int = DENSITY_BINS) -> dict:
    """Every track of a large map as the non-empty cells of a 2-D histogram, grey by log count."""
    counts, xe, ye = np.histogram2d(xs, ys, bins=bins)  # (bins, bins)
    i, j = np.nonzero(counts)
    cells = [{"x": float(xe[a]), "x2": float(xe[a + 1]), "y": float(ye[b]), "y2": float(ye[b + 1]), "tracks": int(counts[a, b])}
             for a, b in zip(i, j)]
    return {
        "data": {"values": cells},
        "mark": {"type": "rect", "opacity": 0.45},
        "encoding": {
            "x": {"field": "x", "type": "quantitative"}, "x2": {"field": "x2"},
            "y": {"field": "y", "type": "quantitative"}, "y2": {"field": "y2"},
            "color": {"field": "tracks", "type": "quantitative", "scale": {"type": "log", "scheme": "greys"}, "legend": None},
            "tooltip": [{"field": "tracks", "title": "tracks here"}],
        },
    }


def with_upload(spec: dict, coords: Optional[tuple[float, float]], name: str = "your track") -> dict:
    """``spec`` (from :func:`upload_map_spec`) with the upload as a labelled star at ``coords``: a new
    top-level dict around the same layers, so the cached map is shared, never changed."""
    if coords is None:
        return spec
    star = {
        "data": {"values": [{"x": float(coords[0]), "y": float(coords[1]), "label": name}]},
        "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"},
                     "tooltip": [{"field": "label", "title": "upload"}]},
        "layer": [
            {"mark": {"type": "point", "shape": STAR, "size": 700, "filled": True, "color": "#111111", "opacity": 1,
                      "stroke": "white", "strokeWidth": 1.5}},
            {"mark": {"type": "text", "dy": -20, "fontWeight": "bold", "fontSize": 13}, "encoding": {"text": {"field": "label"}}},
        ],
    }
    return {**spec, "layer": [*spec["layer"], star]}


def group_mix_spec(groups: dict, top: int = 8) -> dict:
    """A cluster's ``top`` largest groups (``groups``: name → count, largest first) as horizontal bars."""
    rows = [{"group": str(name), "tracks": int(n)} for name, n in list(groups.items())[:top]]
    return {
        "height": {"step": 26},
        "data": {"values": rows},
        "mark": {"type": "bar", "color": colour_for(0)},
        "encoding": {
            "y": {"field": "group", "type": "nominal", "sort": None, "title": None, "axis": {"labelOverlap": False}},
            "x": {"field": "tracks", "type": "quantitative", "title": "tracks", "axis": {"tickMinStep": 1}},
            "tooltip": [{"field": "group"}, {"field": "tracks"}],
        },
    }


def mel_ticks(config: FeatureConfig, n: int = 6) -> tuple[list[int], list[str]]:
    """``n`` mel-band indices across the bands, and each band's centre frequency as a label."""
    import librosa

    hz = librosa.mel_frequencies(n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax)
    ticks = [int(i) for i in np.linspace(0, config.n_mels - 1, n)]
    return ticks, [f"{hz[i] / 1000:.1f} kHz" if hz[i] >= 1000 else f"{hz[i]:.0f} Hz" for i in ticks]


def mel_png(mel_db: np.ndarray, lo: float, hi: float) -> bytes:
    """A log-mel (dB, ``(n_mels, T)``) as a PNG, low bands at the bottom, ``lo``..``hi`` dB over the magma map."""
    from PIL import Image
    from plotly.colors import hex_to_rgb, sequential

    stops = np.array([hex_to_rgb(c) for c in sequential.Magma], dtype=np.float64)  # (s, 3)
    at = np.linspace(0.0, 1.0, len(stops))
    lut = np.stack([np.interp(np.linspace(0.0, 1.0, 256), at, stops[:, k]) for k in range(3)], axis=1)  # (256, 3)
    level = np.clip((mel_db - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = lut[np.round(level[::-1] * 255).astype(np.intp)].astype(np.uint8)  # (n_mels, T, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def mel_image_spec(mel_db: np.ndarray, config: FeatureConfig, height: int = 320) -> dict:
    """A log-mel (dB) as an image on time (s) and mel-band axes, the bands labelled in Hz, with a dB legend.

    ``config`` gives the frames' hop (that of the columns given: a display-averaged mel has a longer one)."""
    n_mels, frames = mel_db.shape
    seconds = frames * config.hop_length / config.sample_rate
    lo, hi = float(np.percentile(mel_db, 0.5)), float(np.percentile(mel_db, 99.9))
    url = "data:image/png;base64," + base64.b64encode(mel_png(mel_db, lo, hi)).decode("ascii")
    ticks, labels = mel_ticks(config)
    label_of = ", ".join(f"'{t}': '{label}'" for t, label in zip(ticks, labels))
    x = {"field": "x", "type": "quantitative", "title": "time (s)", "scale": {"domain": [0, seconds], "nice": False}}
    y = {"field": "y", "type": "quantitative", "title": "mel band", "scale": {"domain": [0, n_mels], "nice": False},
         "axis": {"values": [t + 0.5 for t in ticks], "labelExpr": f"{{{label_of}}}[floor(datum.value)]"}}
    return {
        "height": height,
        "layer": [
            {"data": {"values": [{"url": url, "x": 0.0, "x2": seconds, "y": 0.0, "y2": float(n_mels)}]},
             "mark": {"type": "image", "aspect": False},
             "encoding": {"x": x, "x2": {"field": "x2"}, "y": y, "y2": {"field": "y2"}, "url": {"field": "url"}}},
            # nothing drawn: the dB legend, in the image's colours
            {"data": {"values": [{"db": lo}, {"db": hi}]},
             "mark": {"type": "point", "opacity": 0},
             "encoding": {"color": {"field": "db", "type": "quantitative", "title": "dB",
                                    "scale": {"scheme": MEL_SCHEME, "domain": [lo, hi]}}}},
        ],
    }
