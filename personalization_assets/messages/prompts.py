"""Prompt templates: one library read from `prompts/`, feeding every generator backend.

An LLM backend sends the rendered chat messages; the embedded template generator reads the same
tone files' front matter (subject patterns, openers, call to action). Documents are passed as
delimited data, never as instructions, and the prompt hash recorded with each variant is the hash
of exactly what an LLM would receive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from personalization_assets.campaign.config import BodyLength, NonBlank
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.files import StrictModel, parse_yaml, validate

MERGE_FIELDS = ("first_name", "email")
# Text in a document that addresses a model rather than a reader: prompt injection. It stays inert
# data inside <documents> for an LLM, and the embedded generator never quotes it.
INSTRUCTION_LIKE = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.]{0,60}\b(instructions?|rules|prompts?|guidelines)\b"
    r"|\bsystem prompt\b|\byou are (now )?(an?|the) (ai|assistant|model|chatbot|language model)\b"
    r"|\bnew instructions?\b|\b(respond|reply|answer|output) only with\b|\bas an ai\b",
    re.IGNORECASE,
)
FRONT_MATTER_DELIMITER = "---"


@dataclass(frozen=True)
class ToneSpec:
    """How one tone (or the control message) is written."""

    name: str
    instructions: str
    subject_patterns: tuple[str, ...]
    openers: tuple[str, ...]
    cta: str
    closing: str
    structure: str = "plain"  # how the embedded generator lays the email out (backends/local_generator.LAYOUTS)
    bridges: tuple[str, ...] = ()  # optional second sentence after the opener


@dataclass(frozen=True)
class PromptLibrary:
    directory: Path
    system: str
    generate: str
    tones: Mapping[str, ToneSpec]
    control: ToneSpec

    def tone(self, name: str) -> ToneSpec:
        if name not in self.tones:
            raise ConfigError(self.directory / "tones", f"no prompt file for tone '{name}' (have: {sorted(self.tones)})")
        return self.tones[name]


@dataclass(frozen=True)
class PromptDocument:
    """A retrieved document as a prompt sees it."""

    document_id: str
    title: str
    content: str
    source_url: str


# How the embedded generator lays an email out (`backends/local_generator.LAYOUTS`).
LayoutName = Literal["plain", "brief", "detailed", "conversational"]


class ToneFrontMatter(StrictModel):
    """The front matter of a tone (or control) prompt file: the embedded generator's phrase banks."""

    name: NonBlank | None = None
    structure: LayoutName = "plain"
    subject_patterns: tuple[NonBlank, ...] = ()
    subject: NonBlank | None = None
    openers: tuple[NonBlank, ...] = ()
    opener: NonBlank | None = None
    bridges: tuple[NonBlank, ...] = ()
    cta: NonBlank
    closing: str = ""

    @model_validator(mode="after")
    def _phrases(self) -> ToneFrontMatter:
        if not (self.subject_patterns or self.subject) or not (self.openers or self.opener):
            raise ValueError("needs subject_patterns (or subject) and openers (or opener)")
        return self


def _split_front_matter(path: Path) -> tuple[object, str]:
    text = path.read_text(encoding="utf-8")
    if not text.startswith(FRONT_MATTER_DELIMITER):
        return {}, text.strip()
    _, header, body = text.split(FRONT_MATTER_DELIMITER, 2)
    return parse_yaml(header, path, what="front matter"), body.strip()


def _load_tone(path: Path) -> ToneSpec:
    raw, instructions = _split_front_matter(path)
    meta = validate(ToneFrontMatter, raw, path, prefix="front matter")
    return ToneSpec(
        name=meta.name or path.stem,
        instructions=instructions,
        subject_patterns=meta.subject_patterns or (meta.subject,),
        openers=meta.openers or (meta.opener,),
        cta=meta.cta,
        closing=meta.closing,
        structure=meta.structure,
        bridges=meta.bridges,
    )


def load_prompts(directory: Path | str, tones: Sequence[str]) -> PromptLibrary:
    directory = Path(directory)
    required = [directory / "system.md", directory / "generate.md", directory / "control.md"]
    required += [directory / "tones" / f"{tone}.md" for tone in tones]
    for path in required:
        if not path.is_file():
            raise ConfigError(path, "prompt file not found")
    return PromptLibrary(
        directory=directory,
        system=(directory / "system.md").read_text().strip(),
        generate=(directory / "generate.md").read_text().strip(),
        tones={tone: _load_tone(directory / "tones" / f"{tone}.md") for tone in tones},
        control=_load_tone(directory / "control.md"),
    )


def looks_like_instruction(text: str) -> bool:
    return INSTRUCTION_LIKE.search(text) is not None


def format_documents(documents: Sequence[PromptDocument]) -> str:
    """Documents as delimited, escaped data: a document cannot close its own tag and speak as us."""
    blocks = []
    for doc in documents:
        attributes = " ".join(
            f'{name}="{html.escape(value, quote=True)}"'
            for name, value in (("id", doc.document_id), ("title", doc.title), ("url", doc.source_url))
        )
        blocks.append(f"<document {attributes}>\n{html.escape(doc.content, quote=False)}\n</document>")
    return "\n".join(blocks)


def fill(template: str, values: Mapping[str, object]) -> str:
    """Substitute $names; `{{merge_fields}}` and unknown $words are left exactly as written."""
    return string.Template(template).safe_substitute({k: str(v) for k, v in values.items()})


def prompt_messages(
    library: PromptLibrary,
    *,
    tone: ToneSpec,
    company_name: str,
    goal: str,
    segment_name: str,
    segment_description: str,
    documents: Sequence[PromptDocument],
    body_length: BodyLength,
) -> list[dict[str, str]]:
    """The chat messages an LLM backend sends: segment-level descriptors and content only, no PII."""
    values = {
        "company_name": company_name,
        "goal": goal,
        "segment_name": segment_name,
        "segment_description": segment_description,
        "tone_name": tone.name,
        "tone_instructions": fill(tone.instructions, {"company_name": company_name}),
        "documents": format_documents(documents),
        "body_min_chars": body_length.min_chars,
        "body_max_chars": body_length.max_chars,
    }
    return [
        {"role": "system", "content": fill(library.system, values)},
        {"role": "user", "content": fill(library.generate, values)},
    ]


def prompt_files_version(directory: Path | str, tones: Sequence[str], *written_for: str) -> str:
    """A short hash of the prompt files a campaign's variants are written from (system, generate,
    control and each configured tone) and of `written_for` (the company name and goal the prompts
    are filled with): the message assets' Dagster code version, so the UI marks a segment built
    before such an edit as stale until it is rebuilt."""
    directory = Path(directory)
    files = [directory / "system.md", directory / "generate.md", directory / "control.md",
             *(directory / "tones" / f"{tone}.md" for tone in tones)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    for text in written_for:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


def prompt_sha256(messages: Sequence[Mapping[str, str]], tone: ToneSpec | None = None) -> str:
    """The hash of everything a backend is given to write a variant: the messages, and the tone's
    phrase banks (which the embedded generator writes from), so an edit of either changes it."""
    given = {"messages": list(messages), "tone": dataclasses.asdict(tone) if tone is not None else None}
    return hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()
