"""musiclust benchmark: ``python -m musiclust bench`` (see :mod:`musiclust.bench.run`)."""
