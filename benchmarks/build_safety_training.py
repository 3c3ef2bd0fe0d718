"""Build the embedded safety classifier's training texts (`backends/data/safety_training.csv`).

Run from the repository root after editing any source below:

    .venv/bin/python benchmarks/build_safety_training.py

Sources, all written for this project: the first evaluation set, both halves
(`benchmarks/data/safety_eval_set.csv`; its held-out half was measured once and then became
tuning data, see docs/safety.md; the fresh held-out set `safety_eval_fresh.csv` is never read here), the
labelled test fixture (`personalization_assets_tests/fixtures/safety_labelled.csv`), and the
sentences of the sample campaign's approved content documents (benign marketing copy), and
`backends/data/safety_training_benign.csv`: ordinary sentences that name protected groups, so the
classifier does not learn that naming a group is hate. Labels are
the four harm categories and `benign`; compliance and blocklist texts count as benign here (the
rules, not the classifier, judge them).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "benchmarks" / "data" / "safety_eval_set.csv"
FIXTURE = ROOT / "personalization_assets_tests" / "fixtures" / "safety_labelled.csv"
CONTENT = ROOT / "personalization_assets" / "campaign" / "sample" / "content"
OUT = ROOT / "personalization_assets" / "backends" / "data" / "safety_training.csv"
GROUP_MENTIONS = ROOT / "personalization_assets" / "backends" / "data" / "safety_training_benign.csv"
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")


def training_rows() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with EVAL_SET.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] in ("tune", "held_out"):
                rows.append((row["text"], row["label"] if row["label"] in CATEGORIES else "benign"))
    with FIXTURE.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category = row["expected"].removeprefix("unsafe:")
            rows.append((row["text"], category if category in CATEGORIES else "benign"))
    for path in sorted(CONTENT.glob("*.json")):
        document = json.loads(path.read_text())
        for sentence in re.split(r"(?<=[.!?])\s+", f"{document['title']}. {document['content']}"):
            if len(sentence.split()) >= 4:
                rows.append((sentence, "benign"))
    with GROUP_MENTIONS.open(newline="", encoding="utf-8") as handle:
        rows += [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    return list(dict.fromkeys(rows))


def main() -> None:
    rows = training_rows()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    counts = {label: sum(1 for _, lab in rows if lab == label) for label in (*CATEGORIES, "benign")}
    print(f"wrote {len(rows)} texts to {OUT.relative_to(ROOT)}: {counts}")


if __name__ == "__main__":
    main()
