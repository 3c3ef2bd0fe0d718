"""Text as the safety rules read it: Unicode folded, invisible characters removed, phrases compiled.

The embedded classifier (`backends/local_safety.py`), the blocklists and the compliance rules all
match on the same normalized text, so a zero-width space or a typographic quote hides a word from
none of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

# Generated copy is full of typographic quotes and dashes; the lexicon is written in ASCII.
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
# Zero-width characters would otherwise split a word in two and hide it from every pattern.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")


def normalize(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC))


def comparable(text: str) -> str:
    """Lower case, punctuation folded to single spaces: 'Hurry, only 2 left!' -> ' hurry only 2 left '.

    Used to ask whether a claim in the copy is quoted by the source documents.
    """
    return " " + " ".join(re.sub(r"[^\w%$]+", " ", normalize(text).lower()).split()) + " "


def compile_phrase(phrase: str, placeholders: Mapping[str, str] | None = None) -> re.Pattern[str]:
    """A phrase table row as a pattern: `{name}` placeholders expanded, " ?" optional whitespace,
    any other space one or more whitespace characters, matched case-insensitively as whole words."""
    for placeholder, expansion in (placeholders or {}).items():
        phrase = phrase.replace(placeholder, expansion)
    phrase = phrase.replace(" ?", r"\s*").replace(" ", r"\s+")
    # Lookarounds rather than \b: some phrases start or end with an apostrophe or a hyphen.
    return re.compile(r"(?<!\w)(?:" + phrase + r")(?!\w)", re.IGNORECASE)
