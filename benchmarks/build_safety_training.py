"""Build the training texts of the screen's two classifiers: the embedded backend's harm
classifier (`backends/data/safety_training.csv`) and the compliance rules' claim classifier
(`safety/data/claim_training.csv`).

Run from the repository root after editing any source below:

    .venv/bin/python benchmarks/build_safety_training.py

Sources, all written for this project: the three evaluation sets measured so far
(`benchmarks/data/safety_eval_set.csv`, `safety_eval_fresh.csv`, `safety_eval_third.csv`; each
was measured once before it became training data, see docs/safety.md; the fourth,
`safety_eval_fourth.csv`, is never read here), the labelled test fixture
(`personalization_assets_tests/fixtures/safety_labelled.csv`), the sentences of the sample
campaign's approved content documents (benign marketing copy), and
`backends/data/safety_training_benign.csv`: ordinary sentences that name protected groups, so the
harm classifier does not learn that naming a group is hate; and, for the claim classifier only,
the tone phrase banks of `prompts/tones/` filled with the sample documents' titles ("Don't wait:
Ridgeline 2 Tent"): the project's policy is that a call to act now with no invented deadline,
countdown or stock level is not false urgency.

Labels: for the harm classifier, the four harm categories and `benign` (compliance and blocklist
texts count as benign there: the rules judge them); for the claim classifier, the three claim
rules (`safety/claims.CLAIM_RULES`) and `none` (everything else, harmful texts included).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from string import Template

import yaml

ROOT = Path(__file__).resolve().parents[1]
EVAL_SETS = tuple(ROOT / "benchmarks" / "data" / name for name in ("safety_eval_set.csv", "safety_eval_fresh.csv", "safety_eval_third.csv", "safety_eval_fourth.csv"))
FIXTURE = ROOT / "personalization_assets_tests" / "fixtures" / "safety_labelled.csv"
CONTENT = ROOT / "personalization_assets" / "campaign" / "sample" / "content"
HARM_OUT = ROOT / "personalization_assets" / "backends" / "data" / "safety_training.csv"
CLAIM_OUT = ROOT / "personalization_assets" / "safety" / "data" / "claim_training.csv"
TONES = ROOT / "prompts" / "tones"
GROUP_MENTIONS = ROOT / "personalization_assets" / "backends" / "data" / "safety_training_benign.csv"
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
CLAIM_RULES = ("false_urgency", "health_financial_promise", "unverifiable_guarantee")


def labelled_texts() -> list[tuple[str, str]]:
    """Every source text with its evaluation label ("Hate", "compliance:false_urgency", "benign", ...)."""
    rows: list[tuple[str, str]] = []
    for path in EVAL_SETS:
        with path.open(newline="", encoding="utf-8") as handle:
            rows += [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    with FIXTURE.open(newline="", encoding="utf-8") as handle:
        rows += [(row["text"], row["expected"].removeprefix("unsafe:")) for row in csv.DictReader(handle)]
    for path in sorted(CONTENT.glob("*.json")):
        document = json.loads(path.read_text())
        for sentence in re.split(r"(?<=[.!?])\s+", f"{document['title']}. {document['content']}"):
            if len(sentence.split()) >= 4:
                rows.append((sentence, "benign"))
    with GROUP_MENTIONS.open(newline="", encoding="utf-8") as handle:
        rows += [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    return rows


def tone_phrases() -> list[str]:
    """The embedded generator's tone phrase banks (subjects with each sample title, openers,
    closings): calls to act without a claim."""
    titles = [json.loads(path.read_text())["title"] for path in sorted(CONTENT.glob("*.json"))]
    phrases: list[str] = []
    for path in sorted(TONES.glob("*.md")):
        bank = yaml.safe_load(path.read_text().split("---")[1])
        phrases += [Template(pattern).safe_substitute(title=title) for pattern in bank.get("subject_patterns", []) for title in titles]
        phrases += [*bank.get("openers", []), bank.get("closing", "")]
    return [phrase for phrase in phrases if phrase]


def harm_label(label: str) -> str:
    return label if label in CATEGORIES else "benign"


def claim_label(label: str) -> str:
    rule = label.removeprefix("compliance:")
    return rule if rule in CLAIM_RULES else "none"


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    rows = list(dict.fromkeys(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    print(f"wrote {len(rows)} texts to {path.relative_to(ROOT)}: {dict(sorted(counts.items()))}")


def main() -> None:
    texts = labelled_texts()
    write(HARM_OUT, [(text, harm_label(label)) for text, label in texts])
    write(CLAIM_OUT, [(text, claim_label(label)) for text, label in texts] + [(phrase, "none") for phrase in tone_phrases()])


if __name__ == "__main__":
    main()
