"""The musiclust web app (Streamlit), split by concern. ``app.py`` routes with :func:`route` and :func:`run`;
the pages (``pages/*.py``) use what this package exports and :class:`musiclust.service.Service`, nothing else.

- :mod:`.navigation`: the page list, ``st.navigation``, a page's starting point.
- :mod:`.state`: configuration from the environment, the cached Service and retrain jobs, the sidebar's choices.
- :mod:`.caches`: tables and computed arrays, cached per model version (``st.cache_data``).
- :mod:`.sidebar`: data set, model, retrain form and progress; the pages' guards.
- :mod:`.components`: players, playlist downloads, a cluster's card.
- :mod:`.figures`: Plotly figures (the latent map itself is :mod:`musiclust.serving.figures`), imported on the
  first use of one of its names here: it needs pandas, Plotly and librosa, which the first page does not.
  The upload answer's charts are Vega-Lite specs (:mod:`musiclust.serving.vega`).
- :mod:`.text`: escaping, track lines, playlists, labels.
"""

from dataclasses import replace  # noqa: F401  (a feature config with another hop, for a pooled spectrogram)

from musiclust.serving.figures import MAP_MAX_POINTS, display_mel, map_figure, map_note, marker_size  # noqa: F401
from musiclust.serving.vega import mel_image_spec  # noqa: F401
from musiclust_app.caches import collection_mel, draw_upload_map, morph, reconstruction_report, sonified, tracks_of  # noqa: F401
from musiclust_app.components import (  # noqa: F401
    EXCERPT_HELP, MAX_UPLOAD_MB, UPLOAD_TYPES, cluster_card, play_audio, play_track, playlist_buttons, waiting_for_first_model,
)
from musiclust_app.navigation import page_context, page_model, route, run  # noqa: F401
from musiclust_app.sidebar import load_model, require_model, require_trained  # noqa: F401
from musiclust_app.state import warm_model  # noqa: F401
from musiclust_app.text import TRAIN_COMMAND, dataset_label, describe_label, file_digest, md, track_line  # noqa: F401

_FIGURES = (  # musiclust_app.figures' names, imported on first use (PEP 562)
    "METRIC_LABELS", "contingency_figure", "contingency_height", "k_sweep_figure", "mel_figure", "metric_figure",
    "morph_figure", "reconstruction_figure", "training_curves_figure",
)


def __getattr__(name: str):
    if name in _FIGURES:
        from musiclust_app import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
