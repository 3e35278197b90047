"""musiclust web app: ``streamlit run app.py``.

Routes the pages with ``st.navigation`` and draws the shared sidebar (data set, model, retrain).
Nothing is trained or rendered at start-up: models are loaded (once, cached) when a page needs one.
"""

import streamlit as st

st.set_page_config(page_title="musiclust", page_icon=":material/graphic_eq:", layout="wide")

import app_support as ui  # noqa: E402  (after set_page_config)

PAGES = [
    st.Page("pages/upload.py", title="Your track", icon=":material/upload_file:", default=True),
    st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
    st.Page("pages/reconstructions.py", title="Reconstructions", icon=":material/compare:"),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
]


nav = st.navigation(PAGES)
ui.shell()
nav.run()
