"""The approved content corpus: one JSON document per file, validated against its contract."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from personalization_assets.campaign.dates import iso_date
from personalization_assets.campaign.errors import (
    DataContractError,
    undecodable_position,
)

DOCUMENT_FIELDS = (
    "document_id",
    "title",
    "category",
    "content",
    "audience",
    "keywords",
    "approval_date",
    "source_url",
    "metadata",
)
TEXT_FIELDS = ("document_id", "title", "category", "content", "audience", "source_url")
# The warehouse stores these as JSON text so every table stays flat and SQL-friendly.
CORPUS_COLUMNS = (*DOCUMENT_FIELDS[:-1], "metadata_json", "source_file")


def _load_document(path: Path) -> dict:
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataContractError(path, None, f"must be UTF-8 text: {undecodable_position(path, exc)}") from None
    except json.JSONDecodeError as exc:
        raise DataContractError(path, None, f"must be valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise DataContractError(path, None, "must hold one JSON object")
    for key in DOCUMENT_FIELDS:
        if key not in document:
            raise DataContractError(path, key, "required field missing")
    for key in TEXT_FIELDS:
        if not isinstance(document[key], str) or not document[key].strip():
            raise DataContractError(path, key, "must be a non-empty string", [repr(document[key])])
    if not isinstance(document["keywords"], list) or not all(isinstance(k, str) for k in document["keywords"]):
        raise DataContractError(path, "keywords", "must be a list of strings", [repr(document["keywords"])])
    if not document["source_url"].startswith("https://"):
        raise DataContractError(path, "source_url", "must be an https:// URL", [document["source_url"]])
    try:
        document["approval_date"] = iso_date(document["approval_date"]).isoformat()
    except ValueError:
        raise DataContractError(path, "approval_date", "must be an ISO 8601 date or timestamp (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)",
                                [repr(document["approval_date"])]) from None
    return document


def load_corpus(content_dir: Path | str) -> pd.DataFrame:
    """Every approved document under `content_dir`, one row each, sorted by document id."""
    content_dir = Path(content_dir)
    files = sorted(content_dir.glob("*.json"))
    if not files:
        raise DataContractError(content_dir, None, "the content folder must contain at least one *.json document")
    rows, failures = [], []
    for path in files:
        try:
            document = _load_document(path)
        except DataContractError as error:
            failures.append(error)  # every failing file is listed, not only the first
            continue
        rows.append(
            {
                **{key: document[key].strip() if key in TEXT_FIELDS else document[key] for key in DOCUMENT_FIELDS[:-1]},
                "keywords": ",".join(k.strip().lower() for k in document["keywords"]),
                "approval_date": str(document["approval_date"]),
                "metadata_json": json.dumps(document["metadata"], sort_keys=True),
                "source_file": path.name,
            }
        )
    if len(failures) == 1:
        raise failures[0]
    if failures:
        names = ", ".join(Path(error.file).name for error in failures)
        raise DataContractError(content_dir, None, f"{len(failures)} of {len(files)} documents break their contract ({names}); "
                                "their errors:", [str(error) for error in failures])
    corpus = pd.DataFrame(rows, columns=list(CORPUS_COLUMNS))
    duplicated = corpus["document_id"].duplicated(keep=False)
    if duplicated.any():
        raise DataContractError(
            content_dir, "document_id", "must be unique across documents", corpus.loc[duplicated, ["document_id", "source_file"]]
        )
    return corpus.sort_values("document_id").reset_index(drop=True)
