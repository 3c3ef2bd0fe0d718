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
    "unsafe_markup": r"<[/!?]?[A-Za-z]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);",
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


# Look-alike letters from other scripts (Cyrillic, Greek) that spell Latin words to the eye.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ԛ": "q", "ԝ": "w", "ү": "y", "һ": "h",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w", "γ": "y", "μ": "u", "ς": "s", "σ": "o",
})
# Digits and symbols written for letters ("k1ll", "h@ng", "$lut"), read back only inside words.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l", "€": "e"})
_LEET_WORD = re.compile(r"(?<![\w@$!|€])(?=[\w@$!|€]*[a-z])(?=[\w@$!|€]*[0-9@$!|€])[\w@$!|€]+")
# Letters spelled apart ("k i l l", "s.l.u.t", "b-e-h-e-a-d"): three or more single letters.
# Dotted or dashed first, so "c.u.t y.o.u" keeps its word break.
_SPACED_LETTERS = (re.compile(r"(?<![a-z])(?:[a-z][.\-_*]){2,}[a-z](?![a-z])"), re.compile(r"(?<![a-z])(?:[a-z] ){2,}[a-z](?![a-z])"))
_REPEATED = re.compile(r"([a-z])\1{2,}")  # "kiiiill" -> "kill"; doubles ("kill", "miss") stay
# Words written with a letter starred out ("m*rder", "p*ssy"): read as the one word of this list
# that fits, letter for letter.
_MASKABLE_WORDS = (
    "murder", "murderer", "kill", "killed", "rape", "raped", "shoot", "stab", "pussy", "fuck", "fucking", "fucked", "cunt",
    "slut", "sluts", "whore", "whores", "cock", "dick", "tits", "bitch", "bitches", "fag", "fags", "faggot", "faggots",
    "nigger", "niggers", "nigga", "kike", "kikes", "retard", "retards", "tranny", "trannies", "spic", "spics", "chink",
    "suicide", "die", "hang", "porn", "sex", "nude", "nudes", "naked",
)
_MASKED = re.compile(r"(?<![\w*])(?=[a-z*]*\*)(?=[a-z*]*[a-z])[a-z*]{3,}(?![\w*])")


def _unmask(match: re.Match[str]) -> str:
    word = match.group(0)
    pattern = re.compile(word.replace("*", "[a-z]"))
    fits = [candidate for candidate in _MASKABLE_WORDS if len(candidate) == len(word) and pattern.fullmatch(candidate)]
    return fits[0] if len(fits) == 1 else word


def deobfuscate(text: str) -> str:
    """The text as its disguised words read: normalized, lower case, look-alike letters from other
    scripts mapped to Latin, digits and symbols inside words read as letters, letters spelled
    apart joined, runs of one letter cut to one, and starred-out words read. The harm lexicon and the classifier match this
    as well as the plain normalized text, so "k1ll", "s.l.u.t" and a Cyrillic "рills" are seen."""
    text = normalize(text).lower().translate(_HOMOGLYPHS)
    text = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text)
    for spaced in _SPACED_LETTERS:
        text = spaced.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    return _MASKED.sub(_unmask, _REPEATED.sub(r"\1", text))
