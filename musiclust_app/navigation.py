"""Routing: the pages, ``st.navigation`` over them, and how a page gets the sidebar's choices.

``app.py`` calls :func:`route` and :func:`run`; every page starts with :func:`page_context`.

Why a page can run without ``app.py``: Streamlit (1.67) treats an app whose entry file has a folder named
``pages/`` beside it as a legacy "pages directory" app until some run calls ``st.navigation`` in that
server process (``PagesManager.uses_pages_directory``). A fresh server's first request for a page URL
(``/latent_map``) therefore runs ``pages/latent_map.py`` alone, with no ``app.py`` and no sidebar; and
``AppTest`` re-decides before each of its runs, so every run after ``switch_page`` does the same. This
holds whether ``app.py`` names its pages by path (``st.Page("pages/x.py")``) or not, and
``client.showSidebarNavigation`` only hides the legacy page list. The project keeps its ``pages/``
folder, so :func:`page_context` notices such a run and does what ``app.py`` does: :func:`route` (whose
``st.navigation`` call also ends the legacy mode for the process) and :func:`run`. The sidebar and the
page's widgets then have the same identities (and so the same state) as in a routed run. Public API only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import streamlit as st

from musiclust_app import components, sidebar
from musiclust_app.state import Context, context

PAGES = (  # (script relative to app.py, title, icon)
    ("pages/upload.py", "Your track", ":material/upload_file:"),
    ("pages/latent_map.py", "Latent map", ":material/scatter_plot:"),
    ("pages/reconstructions.py", "Reconstructions", ":material/compare:"),
    ("pages/metrics.py", "Metrics", ":material/monitoring:"),
)

if TYPE_CHECKING:
    from streamlit.navigation.page import StreamlitPage

_this_run = threading.local()  # a script run executes app.py and then its page in one thread


def route() -> StreamlitPage:
    """Set up the page, register the pages with ``st.navigation`` and draw the shared sidebar; returns
    the page the URL asks for (the first one by default)."""
    st.set_page_config(page_title="musiclust", page_icon=":material/graphic_eq:", layout="wide")
    page = st.navigation([st.Page(path, title=title, icon=icon, default=i == 0) for i, (path, title, icon) in enumerate(PAGES)])
    sidebar.draw()
    components.first_run_panel(context())  # on every page while the default set is being built
    return page


def run(page: StreamlitPage) -> None:
    """Run the routed page, telling it that this run drew the sidebar."""
    _this_run.routed = True
    page.run()


def page_context() -> Context:
    """A page's starting point: the sidebar's choices.

    When ``app.py`` did not route this run (see the module docstring), route it here and run the page
    as ``app.py`` would (``st.navigation`` makes the rest of a script run as the main script, which would
    give this page's widgets other identities than in a routed run), then stop this bare run."""
    routed, _this_run.routed = getattr(_this_run, "routed", False), False
    if not routed:
        run(route())
        st.stop()
    return context()


def page_model(ctx: Context):
    """The model a model page shows, or stop the page: while the first run has not saved a model yet (its
    progress panel above says so), or when there is none (:func:`sidebar.require_model` says why)."""
    if components.waiting_for_first_model(ctx):
        st.stop()
    model = sidebar.require_model(ctx)
    if model is None:
        st.stop()
    return model
