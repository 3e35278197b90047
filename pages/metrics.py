"""Metrics: every model beside its baselines (mean ± std over seeds), cluster × group tables, training curves."""

import html
import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_support as ui
from musiclust.analysis.baselines import BASELINES
from musiclust.errors import MusiclustError
from musiclust.analysis.metrics import HIGHER_IS_BETTER, METRICS, format_mean_std, summarize

LABELS = {
    "silhouette": "Silhouette", "calinski_harabasz": "Calinski-Harabasz", "davies_bouldin": "Davies-Bouldin",
    "stability": "Stability",
    "ari": "ARI", "nmi": "NMI", "purity": "Purity",
}
def cell(mean, std, seeds) -> str:
    """mean ± std over the seeds; the mean alone for one seed (no spread to show)."""
    mean = float(mean)
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if int(seeds) <= 1 else format_mean_std(mean, 0.0 if math.isnan(float(std)) else float(std))


KIND_COLOUR = {"baseline": "#BAB0AC", "model": "#4C78A8", "conditioned": "#E45756"}

ctx = ui.page_context()
st.title("Metrics")
st.caption(
    "How well each model's clusters hold together (silhouette, Calinski-Harabasz, Davies-Bouldin, in the space they "
    "were found in) and how well they match the known groups (ARI, NMI, purity), beside baselines scored on the same "
    "tracks, splits and seeds."
)

report = ctx.service.evaluation() if ctx.models or ctx.root.exists() else None

# --- the table --------------------------------------------------------------------------------
if not report or not report.get("rows"):
    st.info(
        f"No evaluation for {ui.dataset_label(ctx.dataset)} yet. `python -m musiclust evaluate --save` scores every "
        f"model beside the baselines over 3 seeds; `{ui.TRAIN_COMMAND}` writes a one-seed table.",
        icon=":material/table:",
    )
else:
    try:
        summary = summarize(report["rows"])
    except MusiclustError as exc:
        st.error(f"The evaluation report cannot be read: {ui.md(exc)}")
        st.stop()
    if "conditioned_on_label" not in summary:
        summary["conditioned_on_label"] = False
    summary["conditioned_on_label"] = summary["conditioned_on_label"].fillna(False).astype(bool)
    summary["kind"] = ["baseline" if m in BASELINES else "conditioned" if c else "model"
                       for m, c in zip(summary["model"], summary["conditioned_on_label"])]
    seeds = sorted({int(r["seed"]) for r in report["rows"] if "seed" in r})
    n_seeds = int(summary["seeds"].max()) if len(summary) else 0
    st.subheader("Every model beside its baselines", anchor=False)
    if n_seeds == 1:
        st.markdown(
            f"Each cell is **one training run** (seed {seeds[0] if seeds else 0}), so no spread is shown; "
            "`python -m musiclust evaluate --save` averages 3 seeds."
        )
    else:
        st.markdown(
            f"Each cell is the **mean ± standard deviation over {n_seeds} seeds**"
            + (f" (seeds {', '.join(map(str, seeds))})." if seeds else ".")
        )
    conditioned = summary.loc[summary["conditioned_on_label"], "model"].tolist()
    if conditioned:
        st.warning(
            f"**{', '.join(conditioned)}** {'is' if len(conditioned) == 1 else 'are'} conditioned on the group label and "
            "scored here against that same label (marked ⚠ in the table). Conditioning tends to remove the group from "
            "the latent, so its ARI / NMI / purity are not a fair comparison with the other rows.",
            icon=":material/warning:",
        )
    present = [m for m in METRICS if m in summary]
    table = pd.DataFrame({"model": [f"{m} ⚠" if c else m for m, c in zip(summary["model"], summary["conditioned_on_label"])],
                          "kind": summary["kind"]})
    for m in present:
        arrow = "↑" if HIGHER_IS_BETTER[m] else "↓"
        table[f"{LABELS[m]} {arrow}"] = [cell(v, s, n) for v, s, n in zip(summary[m], summary[f"{m}_std"], summary["seeds"])]
    if "reconstruction_mse_db" in summary:
        table["recon. MSE (dB²) ↓"] = [f"{v:.1f}" if pd.notna(v) else "–" for v in summary["reconstruction_mse_db"]]
    table["seeds"] = summary["seeds"].astype(int)
    st.dataframe(table, hide_index=True)
    st.caption("↑ higher is better, ↓ lower is better. Baselines: random labels, PCA of the log-mel, MFCC statistics "
               "and lyrics TF-IDF (tracks with lyrics only), each clustered with k-means.")

    st.subheader("Per metric", anchor=False)
    st.caption("Grey: baselines · blue: models · red: a model conditioned on the group label. Error bars: ± one standard "
               "deviation over the seeds.")
    cols = st.columns(3)
    for i, m in enumerate(present):
        fig = go.Figure()
        for kind in ("baseline", "model", "conditioned"):
            part = summary[summary["kind"] == kind]
            if len(part):
                spread = part[f"{m}_std"].fillna(0.0)
                fig.add_trace(go.Bar(
                    x=[html.escape(str(n)) for n in part["model"]], y=part[m], customdata=spread,
                    error_y=dict(type="data", array=spread, visible=True),
                    name=kind, marker_color=KIND_COLOUR[kind],
                    hovertemplate="%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>",
                ))
        fig.update_layout(
            title=dict(text=f"{LABELS[m]} ({'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better)", font=dict(size=14)),
            height=300, margin=dict(l=10, r=10, t=40, b=10), showlegend=False, barmode="group",
            xaxis=dict(tickangle=-35),
        )
        with cols[i % 3]:
            st.plotly_chart(fig, key=f"metric_{m}")

# --- per model ----------------------------------------------------------------------------------
st.subheader("Clusters against groups, and training curves", anchor=False)
if not ctx.models:
    st.info(f"No trained model for {ui.md(ui.dataset_label(ctx.dataset))} yet: run `{ui.TRAIN_COMMAND}` or retrain from the sidebar.")
    st.stop()
st.caption("Left: how many tracks of each group fall in each cluster (a clean clustering has one bright cell per row). "
           "Right: the training and validation losses per epoch.")
for tab, name in zip(st.tabs(ctx.models), ctx.models):
    with tab:
        try:
            b = ctx.bundle(name)
        except MusiclustError as exc:
            st.error(f"{name} could not be loaded: {ui.md(exc)}")
            continue
        frame = ui.tracks_of(ctx, name)
        counts = pd.crosstab(frame["cluster"], frame["group"])
        scores = b.meta.get("metrics") or {}
        facts = [f"{LABELS[m]} {scores[m]:.3f}" for m in ("nmi", "ari", "purity") if isinstance(scores.get(m), (int, float))]
        st.markdown(f"**{name}** · {ui.MODEL_BLURB.get(name, '')} · k = {b.k}" + (f" · this checkpoint: {', '.join(facts)}" if facts else ""))
        left, right = st.columns(2)
        with left:
            heat = go.Figure(go.Heatmap(
                z=counts.to_numpy(), x=[html.escape(str(g)) for g in counts.columns], y=[f"cluster {c}" for c in counts.index],
                colorscale="Blues", text=counts.to_numpy(), texttemplate="%{text}", colorbar=dict(title="tracks"),
                hovertemplate="%{y} · %{x}: %{z} tracks<extra></extra>",
            ))
            heat.update_layout(height=max(260, 34 * len(counts) + 120), margin=dict(l=10, r=10, t=10, b=10),
                               yaxis=dict(autorange="reversed"), xaxis=dict(title="group", tickangle=-30))
            st.plotly_chart(heat, key=f"contingency_{name}")
        with right:
            history = pd.DataFrame(b.meta.get("history") or [])
            if history.empty or "epoch" not in history:
                st.caption("No training history in this checkpoint.")
            else:
                curves = go.Figure()
                columns = [c for c in history.columns if c.startswith(("train_", "val_"))]
                terms = list(dict.fromkeys(c.split("_", 1)[1] for c in columns))
                for column in columns:
                    term = column.split("_", 1)[1]
                    main = term == "loss"
                    curves.add_trace(go.Scatter(
                        x=history["epoch"], y=history[column], mode="lines+markers" if len(history) < 4 else "lines",
                        name=column, legendgroup=term, visible=True if main else "legendonly",
                        line=dict(width=3 if main else 1.5, dash="solid" if column.startswith("train_") else "dot",
                                  color=ui.colour_for(terms.index(term))),
                    ))
                best = b.meta.get("best_epoch")
                if best:
                    curves.add_vline(x=best, line=dict(color="#54A24B", dash="dash"))
                positive = bool((history[[c for c in history.columns if c.startswith(("train_", "val_"))]] > 0).all().all())
                curves.update_layout(height=max(260, 34 * len(counts) + 120), margin=dict(l=10, r=10, t=10, b=10),
                                     xaxis=dict(title="epoch", dtick=max(1, math.ceil(len(history) / 10))),
                                     yaxis=dict(title="loss", type="log" if positive else "linear"),
                                     legend=dict(font=dict(size=10)))
                st.plotly_chart(curves, key=f"curves_{name}")
                st.caption("Solid: training; dotted: validation" + (" (log scale)" if positive else "")
                           + (f"; green dashes: epoch {best}, whose weights were kept" if best else "")
                           + ". Click a legend entry to show a loss term.")
