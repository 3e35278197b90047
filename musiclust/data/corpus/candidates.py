"""Which corpus files (and ABC tune numbers) each group of the default set may use, and in what order.

Listing is cheap: it reads directory listings and plain-text headers, never parses a score, so the
manifest rule (:mod:`.manifest`) can parse only as many candidates as it needs.

Interchangeable candidates share a ``dedupe_key`` (a Palestrina mass, a Trecento piece in two
versions, an Essen song title that recurs in several collections): only the first in seeded order is
used. :func:`selection_order` sorts a group's candidates and shuffles them with a ``random.Random``
seeded by a string, which is reproducible across machines, Python runs and hash seeds.

**Natural instrumentation** (GM program numbers, 0-based as in MIDI program-change data) is a fact
of each group, set explicitly on every part -- nothing is inherited from music21's guess from part
names:

- chorales and Palestrina: 52 Choir Aahs on every voice (choral music sung by a choir);
- Monteverdi: 53 Voice Oohs (madrigals are sung one singer per part), continuo parts on 6 Harpsichord;
- Trecento: 53 Voice Oohs on texted parts, 74 Recorder on untexted ones (tenors and contratenors
  without text are commonly played on instruments);
- quartets: 40 Violin, 40 Violin, 41 Viola, 42 Cello (by part name, else by position);
- German folk songs: 53 Voice Oohs (they are songs; the collection has no words to sing);
- fiddle tunes: 40 Violin (in the Irish and Scottish tradition the fiddle *is* the violin; GM's
  110 "Fiddle" patch would add a timbre cue that no performance has).

Known confound: timbre alone separates some groups (choir vs. solo voices vs. strings), so a model
can score well on the ``natural`` variant without hearing style. Voices, choir and violin are shared
across groups on purpose so that timbre does not separate all of them. The ``piano`` variant
(:func:`musiclust.data.corpus.scores._programs`) puts every part on one piano.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from musiclust.errors import ParameterError

PER_GROUP = 70
MANIFEST_SEED = 20_250

@dataclass(frozen=True)
class Candidate:
    """One piece a group may use, before it is parsed."""

    group: str
    corpus_path: str  # relative to the music21 corpus root, with forward slashes
    number: Optional[int]  # tune number inside an ABC file holding many tunes
    piece_id: str  # also the id of the piece's first clip
    title: str
    composer: str
    dedupe_key: str  # candidates sharing it are interchangeable: only the first in seeded order is used


def corpus_root() -> Path:
    """The folder holding music21's bundled corpus (``.../site-packages/music21/corpus``)."""
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def _slug(text: str) -> str:
    """A filesystem-safe fragment: letters, digits, ``_`` and ``-`` only."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return re.sub(r"_+", "_", slug)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _bach_candidates(root: Path) -> list[Candidate]:
    """Chorales from music21's Riemenschneider list (BWV -> title), where the corpus has the file."""
    from music21.corpus.chorales import ChoraleListRKBWV

    titles: dict[str, str] = {}
    for entry in ChoraleListRKBWV().byRiemenschneider.values():
        titles.setdefault(str(entry["bwv"]), str(entry["title"]))
    files = {p.stem: p for p in sorted((root / "bach").glob("bwv*.mxl"))}
    out = []
    for bwv in sorted(titles):
        path = files.get(f"bwv{bwv}")
        if path is None:
            continue
        piece = f"bach_chorale-{_slug('bwv' + bwv)}"
        out.append(Candidate("bach_chorale", _rel(path, root), None, piece, f"{titles[bwv]} (BWV {bwv})", "J. S. Bach", piece))
    return out


def _humdrum_header(path: Path) -> dict[str, str]:
    """The ``!!!KEY: value`` reference records at the top of a humdrum file."""
    header: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("!!!"):
                break
            key, _, value = line[3:].partition(":")
            header[key.strip()] = value.strip()
    return header


def _palestrina_candidates(root: Path) -> list[Candidate]:
    """Mass movements; section files (``Credo_05_b``) belong to their movement; one clip per mass."""
    out = []
    for path in sorted((root / "palestrina").glob("*.krn")):
        header = _humdrum_header(path)
        mass = header.get("OPR", path.stem)
        movement = header.get("OTL", path.stem)
        piece = f"palestrina-{_slug(re.sub(r'_[a-z]$', '', path.stem))}"
        out.append(Candidate("palestrina", _rel(path, root), None, piece, f"{mass}: {movement}", "G. P. da Palestrina", f"palestrina:{mass}"))
    return out


def _monteverdi_candidates(root: Path) -> list[Candidate]:
    """Madrigals as MusicXML (``madrigal.B.N.mxl``); the ``_old`` duplicate and the analyses are left out."""
    out = []
    for path in sorted((root / "monteverdi").glob("madrigal.*.mxl")):
        match = re.fullmatch(r"madrigal\.(\d+)\.(\d+)", path.stem)
        if not match:
            continue
        piece = f"monteverdi-{_slug(path.stem)}"
        title = f"Madrigali, libro {match.group(1)}, no. {match.group(2)}"
        out.append(Candidate("monteverdi", _rel(path, root), None, piece, title, "C. Monteverdi", piece))
    return out


_TRECENTO_COMPOSERS = {"Jacopo": "Jacopo da Bologna", "Giovanni": "Giovanni da Cascia", "Piero": "Magister Piero"}


def _trecento_title(stem: str) -> str:
    title = re.sub(r"^(?:PMFC_[\d_]+[a-z]?|Fava)[-_]", "", stem)
    title = re.sub(r"^(?:Jacopo|Giovanni|Piero)[-_]\d*[a-z]?[-_]", "", title)
    return re.sub(r"[\s_-]+", " ", title).strip()


def _trecento_candidates(root: Path) -> list[Candidate]:
    """Trecento pieces; ``_bak`` copies dropped, one file per stem (``.xml`` before ``.mxl``).

    Two versions of one piece (``03a``/``03b``, ``Generi a``/``Generi b``) share a dedupe key.
    """
    by_stem: dict[str, Path] = {}
    for path in sorted((root / "trecento").iterdir()):
        if path.suffix not in (".xml", ".mxl") or path.stem.endswith("_bak"):
            continue
        if path.stem not in by_stem or path.suffix == ".xml":
            by_stem[path.stem] = path
    out = []
    for stem, path in sorted(by_stem.items()):
        version_free = re.sub(r"\s[ab]$", "", re.sub(r"(?<=\d)[ab]\b", "", stem))
        composer = next((name for key, name in _TRECENTO_COMPOSERS.items() if f"_{key}" in stem or f"-{key}" in stem), "")
        piece = f"trecento-{_slug(stem)}"
        out.append(Candidate("trecento", _rel(path, root), None, piece, _trecento_title(stem), composer, f"trecento:{version_free}"))
    return out


def _quartet_title(rel: str) -> str:
    parts = rel.split("/")
    work = Path(parts[1]).stem if len(parts) > 1 else rel
    if re.fullmatch(r"k\d+", work):
        work_name = f"K. {work[1:]}"
    else:
        work_name = re.sub(r"opus(\d+)(?:no(\d+))?", lambda m: f"op. {m.group(1)}" + (f" no. {m.group(2)}" if m.group(2) else ""), work)
    name = "Große Fuge" if work == "opus133" else "String Quartet"
    if len(parts) == 3:
        movement = re.sub(r"\D", "", Path(parts[2]).stem)
        return f"{name} {work_name}, mvt. {movement}"
    return f"{name} {work_name}" + ("" if work == "opus133" else " (all movements, one file)")


def _quartet_candidates(root: Path) -> list[Candidate]:
    """Every quartet file as MusicXML (``.krn`` copies dropped); Mozart's K. 545 is a piano sonata."""
    composers = {"beethoven": "L. van Beethoven", "haydn": "J. Haydn", "mozart": "W. A. Mozart"}
    out = []
    for folder, composer in composers.items():
        for path in sorted((root / folder).rglob("*.mxl")):
            rel = _rel(path, root)
            if rel.startswith("mozart/k545/"):
                continue
            piece = f"string_quartet-{_slug(rel[: -len(path.suffix)].replace('/', '-'))}"
            out.append(Candidate("string_quartet", rel, None, piece, _quartet_title(rel), composer, piece))
    return out


def _abc_tunes(path: Path) -> list[dict[str, str]]:
    """``X:`` number and the ``T:``/``O:`` header fields of every tune in an ABC file (first T: wins)."""
    tunes: list[dict[str, str]] = []
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            field_name, _, value = line.partition(":")
            field_name = field_name.strip()
            if field_name == "X" and value.strip().isdigit():
                tunes.append({"X": value.strip()})
            elif tunes and field_name in ("T", "O") and field_name not in tunes[-1]:
                tunes[-1][field_name] = value.strip()
    return tunes


_ESSEN_GERMAN_FILES = re.compile(r"(altdeu|boehme|erk|fink|kinder|zuccal)\d*\.abc")


def _essen_candidates(root: Path) -> list[Candidate]:
    """Tunes of the German collections whose origin line names Germany; one per song title."""
    out = []
    for path in sorted((root / "essenFolksong").glob("*.abc")):
        if not _ESSEN_GERMAN_FILES.fullmatch(path.name):
            continue
        for tune in _abc_tunes(path):
            if "Deutschland" not in tune.get("O", ""):
                continue
            number = int(tune["X"])
            title = tune.get("T", f"{path.stem} {number}").strip()
            piece = f"german_folk-{_slug(path.stem)}-{number}"
            key = "german_folk:" + re.sub(r"[^a-z]", "", title.lower())
            out.append(Candidate("german_folk", _rel(path, root), number, piece, title, "traditional (German)", key))
    return sorted(out, key=lambda c: (c.corpus_path, c.number or 0))


def _fiddle_candidates(root: Path) -> list[Candidate]:
    """Ryan's Mammoth Collection: one dance tune per file."""
    out = []
    for path in sorted((root / "ryansMammoth").glob("*.abc")):
        tunes = _abc_tunes(path)
        title = tunes[0].get("T", path.stem) if tunes else path.stem
        piece = f"fiddle_tune-{_slug(path.stem)}"
        out.append(Candidate("fiddle_tune", _rel(path, root), None, piece, title, "traditional", piece))
    return out


# --------------------------------------------------------------------------------------------------
# Natural instrumentation per group (see the module docstring for the reasons).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    """What the instrumentation rule may look at: the part's name and whether it carries text."""

    name: str
    has_text: bool


def _all(program: int) -> Callable[[Sequence[PartInfo]], list[int]]:
    return lambda parts: [program] * len(parts)


def _monteverdi_programs(parts: Sequence[PartInfo]) -> list[int]:
    return [6 if "continuo" in p.name.lower() else 53 for p in parts]


def _trecento_programs(parts: Sequence[PartInfo]) -> list[int]:
    return [53 if p.has_text else 74 for p in parts]


def _quartet_programs(parts: Sequence[PartInfo]) -> list[int]:
    by_position = (40, 40, 41, 42)
    programs = []
    for index, part in enumerate(parts):
        name = part.name.lower()
        if "cello" in name or name.startswith("vc"):
            programs.append(42)
        elif "viola" in name or name.startswith("vla"):
            programs.append(41)
        elif "viol" in name:
            programs.append(40)
        else:
            programs.append(by_position[min(index, 3)])
    return programs


# --------------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """A kind of music: where its candidates come from, how it is checked and instrumented."""

    name: str
    list_candidates: Callable[[Path], list[Candidate]]
    natural_programs: Callable[[Sequence[PartInfo]], list[int]]
    language: str  # language of its lyrics when the guess has too little evidence ("" if none)
    part_count: Optional[int] = None  # required number of parts, when the group has a fixed layout
    part_names: Optional[tuple[str, ...]] = None  # required part names (case-insensitive), in order
    second_clips: bool = False  # long pieces may give a second clip when the group is short of pieces


GROUPS: tuple[GroupSpec, ...] = (
    GroupSpec("bach_chorale", _bach_candidates, _all(52), "de", 4, ("soprano", "alto", "tenor", "bass")),
    GroupSpec("palestrina", _palestrina_candidates, _all(52), "la"),
    GroupSpec("monteverdi", _monteverdi_candidates, _monteverdi_programs, "it", second_clips=True),
    GroupSpec("trecento", _trecento_candidates, _trecento_programs, ""),
    GroupSpec("string_quartet", _quartet_candidates, _quartet_programs, "", 4, second_clips=True),
    GroupSpec("german_folk", _essen_candidates, _all(53), "de"),
    GroupSpec("fiddle_tune", _fiddle_candidates, _all(40), ""),
)
_GROUP_BY_NAME = {g.name: g for g in GROUPS}


def _group(name: str) -> GroupSpec:
    try:
        return _GROUP_BY_NAME[name]
    except KeyError:
        raise ParameterError(f"unknown group {name!r}; groups are {', '.join(_GROUP_BY_NAME)}") from None


def list_candidates(group: str, root: Optional[Path] = None) -> list[Candidate]:
    """All candidates of ``group`` in sorted corpus order (cheap: no score is parsed)."""
    return _group(group).list_candidates(root or corpus_root())


def selection_order(group: str, root: Optional[Path] = None) -> list[Candidate]:
    """The group's candidates in the order the rule tries them: sorted, then a seeded shuffle.

    ``random.Random`` seeded with a string is reproducible across machines, Python runs and hash
    seeds, so the order depends only on the corpus listing.
    """
    ordered = sorted(list_candidates(group, root), key=lambda c: (c.corpus_path, c.number or 0))
    random.Random(f"{MANIFEST_SEED}:{group}").shuffle(ordered)
    return ordered
