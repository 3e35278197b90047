"""Metrics: how k was chosen (the sweep's curve), every model beside its baselines (mean ± std over seeds) in two
kinds of score (label-free always, label scores only when the collection has groups), cluster × group tables,
training curves."""

import pandas as pd
import streamlit as st

import musiclust_app as ui
from musiclust.service import MusiclustError, score_kinds

ctx = ui.page_context()
st.title("Metrics")
st.caption(
    "Two kinds of score, beside baselines scored on the same tracks, splits and seeds. **Label-free**: how well each "
    "model's clusters hold together (silhouette, Calinski-Harabasz, Davies-Bouldin, in the space they were found in) "
    "and how reproducible they are (stability), which needs no labels. **Label scores**: how well the clusters match "
    "known groups (ARI, NMI, purity), shown only when the collection has groups."
)

# --- how k was chosen ---------------------------------------------------------------------------
K_SOURCE_TEXT = {
    "given": "given: set with `--k` or the sidebar's *Clusters k*",
    "groups": "one cluster per known group",
    "sweep": "found from the data: a sweep over k",
}
if ctx.model:
    try:
        choice = ctx.service.k_choice(ctx.model)
    except MusiclustError:
        choice = None  # the model's own error is shown below, in its tab
    if choice is not None:
        st.subheader("How many clusters", anchor=False)
        st.markdown(f"**k = {choice.k}**, {K_SOURCE_TEXT[choice.source]}"
                    + (f" on the tracks' {ui.md(choice.space.replace('_', ' '))}" if choice.space else "")
                    + (f" under the **{ui.md(choice.criterion.replace('_', ' '))}** criterion: {ui.md(choice.rule)}."
                       if choice.has_curve and choice.criterion else "."))
        if choice.has_curve:
            st.plotly_chart(ui.k_sweep_figure(choice), key="k_sweep")
            st.caption("The criterion's score for each k tried; the star and the dashed line mark the k in use. "
                       "Set *Clusters k* under *Retrain models* in the sidebar to override it.")

# --- the table --------------------------------------------------------------------------------
try:
    table = ctx.service.metrics_table() if ctx.models or ctx.root.exists() else None
except MusiclustError as exc:
    st.error(f"The evaluation report cannot be read: {ui.md(exc)}")
    st.stop()
if table is None:
    st.info(
        f"No evaluation for {ui.dataset_label(ctx.dataset)} yet. `python -m musiclust evaluate --save` scores every "
        f"model beside the baselines over 3 seeds; `{ui.TRAIN_COMMAND}` writes a one-seed table.",
        icon=":material/table:",
    )
else:
    summary = table.summary
    label_free, label_scores = score_kinds(table)
    shown_metrics = label_free + label_scores
    st.subheader("Every model beside its baselines", anchor=False)
    if label_scores:
        st.markdown("Shown: **label-free scores** and **label scores** (against the collection's groups).")
    else:
        st.markdown("Shown: **label-free scores** only. This collection has no groups, so there is nothing to score "
                    "clusters against; choose *Groups from* in the sidebar's retrain settings if it has some.")
    if table.n_seeds == 1:
        st.markdown(
            f"Each cell is **one training run** (seed {table.seeds[0] if table.seeds else 0}), so no spread is shown; "
            "`python -m musiclust evaluate --save` averages 3 seeds."
        )
    else:
        st.markdown(
            f"Each cell is the **mean ± standard deviation over {table.n_seeds} seeds**"
            + (f" (seeds {', '.join(map(str, table.seeds))})." if table.seeds else ".")
        )
    conditioned = table.conditioned
    if conditioned:
        st.warning(
            f"**{', '.join(conditioned)}** {'is' if len(conditioned) == 1 else 'are'} conditioned on the group label and "
            "scored here against that same label (marked ⚠ in the table). Conditioning tends to remove the group from "
            "the latent, so its ARI / NMI / purity are not a fair comparison with the other rows.",
            icon=":material/warning:",
        )
    shown = pd.DataFrame({"model": [f"{m} ⚠" if c else m for m, c in zip(summary["model"], summary["conditioned_on_label"])],
                          "kind": summary["kind"]})
    for m in shown_metrics:
        arrow = "↑" if table.higher_is_better[m] else "↓"
        shown[f"{ui.METRIC_LABELS[m]} {arrow}"] = [table.cell(i, m) for i in range(len(summary))]
    for m in table.heldout:  # the same label scores, of the pieces each seed held out of training
        shown[f"held-out {ui.METRIC_LABELS[m.removeprefix('heldout_')]} ↑"] = [table.cell(i, m) for i in range(len(summary))]
    if "reconstruction_mse_db" in summary:
        shown["recon. MSE (dB²) ↓"] = [f"{v:.1f}" if pd.notna(v) else "–" for v in summary["reconstruction_mse_db"]]
    shown["seeds"] = summary["seeds"].astype(int)
    st.dataframe(shown, hide_index=True)
    st.caption("↑ higher is better, ↓ lower is better. Baselines: random labels, PCA of the log-mel, MFCC statistics, "
               "MFCC statistics joined with the lyrics as the fused model joins them, and lyrics TF-IDF (tracks with "
               "lyrics only), each clustered with k-means."
               + (" Held-out: the same scores for the pieces each seed kept out of training (~15 %), placed by the "
                  "model and by k-means fitted without them." if table.heldout else ""))
    if table.not_scored:
        st.caption("Not scored on this collection: " + "; ".join(f"{m} ({ui.md(why)})" for m, why in table.not_scored.items()) + ".")

    st.caption("Grey: baselines · blue: models · red: a model conditioned on the group label. Error bars: ± one standard "
               "deviation over the seeds.")
    for heading, metrics in (("Label-free scores", label_free), ("Label scores, against the groups", label_scores)):
        if not metrics:
            continue
        st.subheader(heading, anchor=False)
        cols = st.columns(3)
        for i, m in enumerate(metrics):
            with cols[i % 3]:
                st.plotly_chart(ui.metric_figure(table, m), key=f"metric_{m}")

# --- per model ----------------------------------------------------------------------------------
st.subheader("Clusters against groups, and training curves", anchor=False)
if not ctx.models:
    st.info(f"No trained model for {ui.md(ui.dataset_label(ctx.dataset))} yet: run `{ui.TRAIN_COMMAND}` or retrain from the sidebar.")
    st.stop()
st.caption("Left: how many tracks of each group fall in each cluster (a clean clustering has one bright cell per row; "
           "a collection without groups shows each cluster's size under 'unknown'). "
           "Right: the training and validation losses per epoch.")
for tab, name in zip(st.tabs(ctx.models), ctx.models):
    with tab:
        model = ui.load_model(ctx, name)
        if model is None:
            continue
        frame = ui.tracks_of(ctx, name)
        facts = [f"{ui.METRIC_LABELS[m]} {model.metrics[m]:.3f}" for m in ("nmi", "ari", "purity", "silhouette", "stability")
                 if isinstance(model.metrics.get(m), (int, float)) and model.metrics[m] == model.metrics[m]]  # NaN: none
        st.markdown(f"**{name}** · {model.blurb} · k = {model.k}" + (f" · this checkpoint: {', '.join(facts)}" if facts else ""))
        left, right = st.columns(2)
        with left:
            st.plotly_chart(ui.contingency_figure(frame), key=f"contingency_{name}")
        with right:
            curves = ui.training_curves_figure(model, height=ui.contingency_height(frame))
            if curves is None:
                st.caption("No training history in this checkpoint.")
            else:
                st.plotly_chart(curves, key=f"curves_{name}")
                st.caption("Solid: training; dotted: validation" + (" (log scale)" if curves.layout.yaxis.type == "log" else "")
                           + (f"; green dashes: epoch {model.best_epoch}, whose weights were kept" if model.best_epoch else "")
                           + ". Click a legend entry to show a loss term.")
