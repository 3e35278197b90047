"""musiclust web app: ``streamlit run app.py``.

Routes the pages (``pages/``) with ``st.navigation`` and draws the shared sidebar (data set, model,
retrain); the app itself is the ``musiclust_app`` package. Nothing is trained or rendered at start-up:
a model is loaded (once per version) when a page needs it.
"""

import musiclust_app

page = musiclust_app.route()  # page config, st.navigation over pages/, the sidebar
musiclust_app.run(page)
