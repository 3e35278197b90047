"""Which soundtracks the set can be built from: one game's music each, with its package and licence.

Data only, plus picking some by name: everything else reads files through ``sources``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import BuildError


@dataclass(frozen=True)
class Soundtrack:
    """One game's music: a Debian package, the folder (or .pk3 archive) its tracks are in, the licence."""

    name: str  # folder name and label
    package: str
    licence: str
    copyright: str
    root: str  # a directory, or a zip archive (.pk3) when member_prefix is set
    member_prefix: Optional[str] = None
    default: bool = True  # part of the default full set
    note: str = ""
    per_file: tuple = ()  # (file-name prefix, licence, copyright) where files differ from the package


CATALOG = (
    Soundtrack("colobot", "colobot-common-sounds", "GPL-3+", "2001-2016 Daniel Roux, EPSITEC SA & TerranovaTeam",
               "/usr/share/games/colobot/music",
               note="two tracks are mostly silence (a short phrase then about a minute of nothing): skipped"),
    Soundtrack("drascula", "drascula-music", "Drascula licence (free to copy and modify; Debian main)",
               "1996-2008 Alcachofa Soft S.L.", "/usr/share/scummvm/drascula/audio",
               note="the per-language folders (en, de, ...) only link to these same files"),
    Soundtrack("hedgewars", "hedgewars-data", "GPL-2", "2004-2018 Andrey Korotaev and the Hedgewars Project",
               "/usr/share/games/hedgewars/Data/Music"),
    Soundtrack("nexuiz", "nexuiz-music", "GPL-2+", "2002-2009 Alientrap (Lee Vermeulen) and contributors",
               "/usr/share/games/nexuiz/data/music.pk3", member_prefix="sound/cdtracks/",
               note="tracks are members of a .pk3 (zip) archive, extracted byte for byte"),
    Soundtrack("pushover", "pushover-data", "GPL-3+", "2008-2018 Roberto Lorenz (music)", "/usr/share/pushover/themes"),
    Soundtrack("singularity", "singularity-music", "CC-BY-SA-3.0", "2007-2012 Max McCracken",
               "/usr/share/games/singularity/music"),
    Soundtrack("supertux", "supertux-data", "GPL-2+", "Marek Moeckel and the SuperTux team",
               "/usr/share/games/supertux2/music", note="game loops: most tracks are written to repeat"),
    Soundtrack("wesnoth", "wesnoth-1.16-music", "GPL-2+", "2003-2022 the Battle for Wesnoth project's composers",
               "/usr/share/games/wesnoth/1.16/data/core/music"),
    # Extras, built with --soundtracks all (or by name).
    Soundtrack("freedroidrpg", "freedroidrpg-data", "GPL-2+", "the FreedroidRPG team",
               "/usr/share/freedroidrpg/data/sound/music", default=False,
               note="228 MB download for 16 tracks: the package is mostly graphics"),
    Soundtrack("hyperrogue", "hyperrogue-music", "CC-BY-SA-3.0", "Shawn Parrotte, Lincoln Domina, Will Savino",
               "/usr/share/hyperrogue/music", default=False,
               note="three composers; short (1-2 min) loops",
               per_file=(("hr3-", "CC-BY-SA-3.0", "Shawn Parrotte"),
                         ("hr-domina-", "CC-BY-SA-3.0", "Lincoln Domina"),
                         ("hr-savino-", "CC-BY-SA-3.0", "Will Savino"))),
    Soundtrack("planetblupi", "planetblupi-music-ogg", "GPL-3+",
               "1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; 2017-2018 Mathieu Schroeter",
               "/usr/share/planetblupi/music", default=False,
               note="10 tracks of 10-29 minutes: the game's loops written out many times over"),
    Soundtrack("warzone2100", "warzone2100-music", "GPL-2+", "1999-2004 Eidos Interactive; 2005-2013 Warzone 2100 Project",
               "/usr/share/games/warzone2100/music", default=False,
               note="Ogg Opus (.opus) files, 5-14 minutes each"),
)  # fmt: skip
BY_NAME = {s.name: s for s in CATALOG}
# The smallest packages whose soundtracks qualify: what CI installs for the fixture (120 MB download).
FIXTURE_SOUNDTRACKS = ("drascula", "pushover", "singularity")


def choose(spec: Optional[str], fixture: bool) -> list[Soundtrack]:
    """The soundtracks that --soundtracks names ('default', 'all' or a comma-separated list), in name order."""
    if spec is None:
        names = FIXTURE_SOUNDTRACKS if fixture else [s.name for s in CATALOG if s.default]
    elif spec == "all":
        names = [s.name for s in CATALOG]
    elif spec == "default":
        names = [s.name for s in CATALOG if s.default]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise BuildError(f"unknown soundtrack(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(BY_NAME)}, default, all")
    return [BY_NAME[n] for n in sorted(set(names))]
