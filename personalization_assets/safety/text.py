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


# What must never reach an email from a content document or a customer value, whatever the screen
# says of its words: markup a mail client would render (a link, a script, a tracking image),
# control characters (CR/LF would start a new header line), bidi and invisible characters (U+202E
# shows text reversed, hiding what it says) and template syntax (a renderer would fill it).
UNSAFE_TEXT_PATTERNS: dict[str, str] = {
    "markup": r"<[/!?]?[A-Za-z]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);",
    "control_character": r"[\x00-\x08\x0b-\x1f\x7f-\x9f]",
    "bidi_or_invisible": "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]",
    "template_syntax": r"\{\{|\}\}|\{%|%\}|\{#|#\}|\$\{",
}
_UNSAFE_TEXT = {kind: re.compile(pattern) for kind, pattern in UNSAFE_TEXT_PATTERNS.items()}


def unsafe_text_kinds(text: str, *, allowed_merge_fields: tuple[str, ...] = ()) -> list[str]:
    """Which kinds of unsafe text (UNSAFE_TEXT_PATTERNS) `text` holds; `{{field}}` for an allowed
    merge field is a variant's own merge syntax, not template syntax smuggled in."""
    for field in allowed_merge_fields:
        text = re.sub(r"\{\{\s*" + re.escape(field) + r"\s*\}\}", " ", text)
    return [kind for kind, pattern in _UNSAFE_TEXT.items() if pattern.search(text)]
