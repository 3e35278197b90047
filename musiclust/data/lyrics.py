"""Cleaning of lyrics taken from scores, and a small language guess for them.

Lyrics in the music21 corpus come from ``music21.text.assembleLyrics``, one syllable per note.
Where a score encodes syllables properly (Bach chorales) the result is clean text; where it was
made by optical recognition (the Monteverdi madrigals) the syllables keep their printed hyphens
("gio- vi- net- ta"), soft hyphens, stray tildes and brackets, and some files even use ``?`` or
``ú`` as the hyphen character. A text model fed that would learn the hyphenation noise rather
than the words, so :func:`clean_lyrics` joins syllables back into words and drops what is not
text. It is deliberately conservative: it never tries to correct a misread letter, because a
wrong guess would invent words that the score does not have.

:func:`guess_language` tells German, Italian and Latin apart (the languages of the corpus) by
counting frequent function words; it returns ``""`` rather than guess when there is too little
evidence.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_lyrics", "guess_language", "LANGUAGE_CODES"]

# Characters that mark a syllable break when they end (or start) a syllable.
_HYPHENS = "-\u00ad\u2010\u2011\u2012\u2013\u2014"
# Characters that some OCR'd scores use *instead of* a hyphen. They are only treated as hyphens when
# a text uses them systematically (see _surrogate_hyphens), so a real "?" or "ú" survives elsewhere.
_SURROGATE_CANDIDATES = ("?", "\u00fa")
_SURROGATE_MIN_SHARE = 0.08  # share of tokens carrying the character
_SURROGATE_MIN_COUNT = 3
# Characters that are never part of sung text: editorial brackets, OCR debris, tie/elision marks.
_NOISE_CHARS = "~_[]{}|$#*^<>=+\\@\u203f\u2040\u00a8"
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"), None)
_VERSE_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*[.,):]")


def _surrogate_hyphens(tokens: list[str]) -> str:
    """The candidate characters that this text uses as hyphens (as a string of characters)."""
    found = ""
    for char in _SURROGATE_CANDIDATES:
        count = sum(1 for t in tokens if char in t)
        if count >= _SURROGATE_MIN_COUNT and count >= _SURROGATE_MIN_SHARE * len(tokens):
            found += char
    return found


def _has_letter(token: str) -> bool:
    return any(c.isalpha() for c in token)


def _split_token(token: str, hyphens: str) -> tuple[bool, str, bool]:
    """(starts with a hyphen, the syllable without hyphens and noise, ends with a hyphen)."""
    for char in _NOISE_CHARS:
        token = token.replace(char, "")
    token = _VERSE_NUMBER.sub("", token)
    leading = bool(token) and token[0] in hyphens
    trailing = bool(token) and token[-1] in hyphens
    core = token.strip(hyphens)
    # Inside a token a hyphen is a syllable break that OCR glued to its neighbours ("ni-ma-mia"):
    # sung texts in the corpus' languages have no hyphenated compounds worth keeping.
    for char in hyphens:
        core = core.replace(char, "")
    return leading, core, trailing


def clean_lyrics(text: str) -> str:
    """Readable lyrics from a score's assembled syllables; ``""`` when nothing meaningful is left.

    Joins hyphenated syllables ("Herz- lich", "Her - zlich", "gio\\u00advi\\u00ad net\\u00ad ta",
    "tor? men? ti" in a text that uses "?" as its hyphen), removes editorial brackets, verse numbers
    and OCR debris, drops tokens that hold no letter (stray punctuation), and collapses whitespace.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFC", str(text)).translate(_INVISIBLE)
    text = text.replace("\u00a0", " ").replace("\u203f", " ")
    tokens = text.split()
    if not tokens:
        return ""
    hyphens = _HYPHENS + _surrogate_hyphens(tokens)
    words: list[str] = []
    join_next = False
    for token in tokens:
        leading, core, trailing = _split_token(token, hyphens)
        if not core:
            # A bare hyphen ("Her - zlich") joins its neighbours; bare punctuation is dropped.
            join_next = join_next or leading or trailing
            continue
        if words and (join_next or leading):
            words[-1] += core
        else:
            words.append(core)
        join_next = trailing
    return " ".join(w for w in words if _has_letter(w))


# Frequent function words that are (nearly) exclusive to one of the corpus' languages. Words shared
# by two of them ("in", "non", "per", "tu", "te") are left out on purpose.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "de": frozenset(
        "und der die das ich du mein meine meinen dein deine nicht mit ist zu den dem des ein eine "
        "einen sich auf wir uns sein dich mich dir mir wie nun auch gott herr herz gib dass daß "
        "bist hat wird aus von vom bei zum zur wenn wo was wer sind soll will kann hab habe "
        "gar noch schon ihr euch sie er es im".split()
    ),
    "it": frozenset(
        "il lo gli che di del della dei delle e è mi mio mia miei ma con un una uno sono io ch "
        "l d s se si al nel nella più piu cor core amor amore quando come questo questa quel "
        "quella sua suo ahi ohi mè ne ti chi da dal ogni or ove già gia fra".split()
    ),
    "la": frozenset(
        "et qui quae quod est sunt deus dei deo domine dominus domino dominum nobis nos tua tuam "
        "tibi cum ad ex sancte sanctus sancto sanctam pax eleison kyrie christe gloria amen ut "
        "virgo mundi caeli celi omnipotentem filius filium patrem spiritus atque sed nunc enim "
        "hoc quem quam tuum meum mea ave maria regina salve miserere peccata tollis excelsis "
        "hosanna benedictus venit nomine laudamus adoramus benedicamus kyrieleison christeleison "
        "christi christus christum gratia gratie gracie gratiae lux nova tempus pater mater nostri "
        "nostra nostrum vita vitae rex regem ergo sicut semper saecula seculorum alleluia omnes "
        "omnium quia tui eius ejus fili filii deum laus".split()
    ),
}
LANGUAGE_CODES = tuple(sorted(_FUNCTION_WORDS))
_MIN_HITS = 1


def guess_language(text: str) -> str:
    """ISO 639-1 code ("de", "it", "la") of the language with most function words, or ``""``.

    Good enough for the corpus (German chorales, Italian madrigals, Latin and Italian Trecento
    pieces); not a general language detector. Needs at least one function-word hit and a clear winner.
    """
    words = re.findall(r"[^\W\d_]+", text.lower().replace("\u2019", "'"))
    scores = {code: sum(1 for w in words if w in vocab) for code, vocab in _FUNCTION_WORDS.items()}
    best = max(scores, key=lambda code: (scores[code], code))
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] < _MIN_HITS or ranked[0] == ranked[1]:
        return ""
    return best
