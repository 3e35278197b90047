"""Latent map: the collection on the model's UMAP map; click a point to hear it, lasso to list tracks."""

import streamlit as st

import musiclust_app as ui
from musiclust.service import UNKNOWN_GROUP, MusiclustError

ctx = ui.page_context()
st.title("Latent map")
st.caption(
    "Each point is a track of the collection, placed by UMAP from the model's latent space: nearby points sound alike "
    "to the model. Click a point to play it; draw a box or lasso (toolbar, top right) to list several."
)

model = ui.page_model(ctx)

frame = ui.tracks_of(ctx)
clusters = sorted(int(c) for c in frame["cluster"].unique())
a, b = st.columns([1, 3])
# a library without groups has nothing to colour by group (every track "unknown"): only clusters are offered
colours = ["cluster", "group"] if (frame["group"] != UNKNOWN_GROUP).any() else ["cluster"]
colour_by = a.segmented_control("Colour by", colours, default="cluster", key="map_colour") or "cluster"
chosen = b.multiselect("Show clusters", clusters, key="map_clusters", placeholder="all clusters",
                       format_func=lambda c: f"cluster {c}")
shown = frame[frame["cluster"].isin(chosen)] if chosen else frame

fig = ui.map_figure(shown, colour_by, marker_size=ui.marker_size(len(shown)), height=600)
event = st.plotly_chart(
    fig,
    on_select="rerun",
    selection_mode=("points", "box", "lasso"),
    key=f"map_{ctx.dataset}_{ctx.model}_{model.version}_{colour_by}_{'-'.join(map(str, chosen))}",
)
note = ui.map_note(min(len(shown), ui.MAP_MAX_POINTS), len(shown))
st.caption((f"{note.capitalize()}: lasso selects among the points drawn · " if note else "")
           + f"{len(shown):,} of {len(frame):,} tracks · {model.k} clusters · model {ctx.model}")

points = (event.selection.get("points") if event is not None else None) or []
# Only scatter points carry a track id (a click on a large map's density layer selects no track).
ids = list(dict.fromkeys(p["customdata"][0] for p in points if isinstance(p.get("customdata"), list) and p["customdata"]))

if len(ids) == 1:
    track_id = ids[0]
    row = frame[frame["id"] == track_id].iloc[0]
    st.subheader("Selected track", anchor=False)
    st.markdown(ui.track_line(row["title"], row["artist"], row["group"]) + f" · cluster {int(row['cluster'])}")
    ui.play_track(row["path"])
    spec, near = st.columns([3, 2])
    with spec:
        st.markdown("**Mel spectrogram**")
        try:
            st.plotly_chart(ui.mel_figure(ui.collection_mel(ctx, track_id), model.feature_config, height=300), key="map_mel")
        except MusiclustError as exc:  # a collection file changed or vanished since training
            st.warning(f"The spectrogram could not be computed: {ui.md(exc)}")
    with near:
        st.markdown("**Its five nearest tracks**")
        for n in ctx.service.neighbours(ctx.model, track_id):
            st.markdown(f"{ui.track_line(n.title, n.artist, n.group)} · distance {n.distance:.2f}")
            ui.play_track(n.path, preview=model.feature_config)
elif len(ids) > 1:
    selected = frame.set_index("id").loc[ids].reset_index()
    st.subheader(f"{len(selected)} tracks selected", anchor=False)
    st.dataframe(selected[["title", "artist", "group", "cluster"]], hide_index=True, height=min(400, 36 + 35 * len(selected)))
    ui.playlist_buttons(selected, "musiclust-selection", key="sel")
else:
    st.info("Click a point to play that track and see its neighbours, or lasso a region to list its tracks.",
            icon=":material/touch_app:")

st.divider()
st.subheader("A cluster as a playlist", anchor=False)
cluster = st.selectbox("Cluster", clusters, key="playlist_cluster", format_func=lambda c: f"cluster {c}")
members = frame[frame["cluster"] == cluster]
card = ctx.service.cluster_card(ctx.model, cluster)
mix = ", ".join(f"{ui.md(g)} {n}" for g, n in list(card.groups.items())[:4]) if card else ""
st.caption(f"{len(members)} tracks" + (f" · {mix}" if mix else ""))
ui.playlist_buttons(members, f"musiclust-cluster-{cluster}", key="cluster")
