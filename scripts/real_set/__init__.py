"""The parts of scripts/build_real_set.py, which builds the real-recording development set from Debian
game-soundtrack packages: ``catalog`` (which soundtracks exist), ``sources`` (reading one file from a
folder or a .pk3), ``judge`` (which files are tracks), ``packages`` (apt), ``output`` (the built folder
and its manifest), ``excerpts`` (FLAC cuts) and ``modes`` (what each command-line mode does). Like the
script, it imports nothing from musiclust; every part raises BuildError for what a person must fix.
"""


class BuildError(Exception):
    """Something a person must fix (a missing package, a bad option); printed without a traceback."""
