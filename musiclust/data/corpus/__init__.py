"""The default data set: real compositions from the music21 corpus, rendered to audio on this machine.

No recorded music can be downloaded here, but PyPI's ``music21`` ships a corpus of scores. This
package picks clips from it by a fixed rule (the *manifest*, committed as ``data/manifest.csv``) and
renders each clip with a General MIDI soundfont into ``data/default/<variant>/<id>.wav``.

Groups (kinds of music a listener would call different), ``PER_GROUP`` = 70 clips each:

========================  ===============================================================================
``bach_chorale``          J. S. Bach's four-part chorales (Riemenschneider list; SATB settings only)
``palestrina``            Palestrina mass movements (humdrum); at most one clip per mass, for variety
``monteverdi``            Monteverdi's five-voice madrigals, books 3-5 (the ``.mxl``, not the analyses)
``trecento``              14th-century Italian polyphony (madrigals, ballate, mass movements, motets)
``string_quartet``        Beethoven, Mozart and Haydn string quartet movements (not Mozart's K. 545 sonata)
``german_folk``           German songs from the Essen folksong collection (ABC, one tune at a time)
``fiddle_tune``           Reels, jigs and hornpipes from Ryan's Mammoth Collection (ABC)
========================  ===============================================================================

One module per job, in the order the data flows:

=================  ================================================================================
:mod:`.candidates` which corpus files each group may use, in seeded order; each group's natural instruments
:mod:`.scores`     parsing a score, tempo, notes in seconds, repeats, lyrics, programs per variant, notes cache
:mod:`.manifest`   the selection rule, and writing / reading ``data/manifest.csv``
:mod:`.render`     one row -> MIDI -> fluidsynth -> WAV, in a killable process with a size cap
:mod:`.build`      the whole set in parallel worker processes, with a report
=================  ================================================================================

``python -m musiclust.data.corpus manifest|render`` (:mod:`.__main__`) is the maintenance command.
The names below are the public API; everything else is reached through its module.
"""

from musiclust.data.corpus.build import DEFAULT_EVENT_CACHE, DEFAULT_ROOT, BuildReport, build_default_set
from musiclust.data.corpus.candidates import (
    GROUPS,
    MANIFEST_SEED,
    PER_GROUP,
    Candidate,
    GroupSpec,
    PartInfo,
    corpus_root,
    list_candidates,
    selection_order,
)
from musiclust.data.corpus.manifest import (
    CLIP_SECONDS,
    MANIFEST_COLUMNS,
    MIN_PIECE_SECONDS,
    PieceInfo,
    build_group_rows,
    build_manifest,
    probe,
    read_manifest,
    write_manifest,
)
from musiclust.data.corpus.render import (
    DEFAULT_MAX_BYTES,
    PEAK_DBFS,
    SAMPLE_RATE,
    SOUNDFONT_CANDIDATES,
    VARIANTS,
    ClipOutcome,
    clip_events,
    find_soundfont,
    render_clip,
)
from musiclust.data.corpus.scores import Event, piece_events
from musiclust.paths import DEFAULT_MANIFEST

__all__ = [
    "BuildReport",
    "CLIP_SECONDS",
    "Candidate",
    "ClipOutcome",
    "DEFAULT_EVENT_CACHE",
    "DEFAULT_MANIFEST",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_ROOT",
    "Event",
    "GROUPS",
    "GroupSpec",
    "MANIFEST_COLUMNS",
    "MANIFEST_SEED",
    "MIN_PIECE_SECONDS",
    "PEAK_DBFS",
    "PER_GROUP",
    "PartInfo",
    "PieceInfo",
    "SAMPLE_RATE",
    "SOUNDFONT_CANDIDATES",
    "VARIANTS",
    "build_default_set",
    "build_group_rows",
    "build_manifest",
    "clip_events",
    "corpus_root",
    "find_soundfont",
    "list_candidates",
    "piece_events",
    "probe",
    "read_manifest",
    "render_clip",
    "selection_order",
    "write_manifest",
]
