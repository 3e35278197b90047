"""musiclust benchmark: ``python -m musiclust bench`` (see :mod:`bench.run`)."""
