"""musiclust: multi-modal unsupervised music clustering.

Data flows audio -> features -> models -> training -> clustering -> metrics -> checkpoints -> service;
the Streamlit app and the CLI are thin layers over :mod:`musiclust.service`.
This package never imports Streamlit.
"""

__version__ = "0.1.0"
