"""Measure the embedded safety screen on the held-out evaluation set, on the sets it was trained on,
and on the fixture.

Run from the repository root:

    .venv/bin/python benchmarks/safety_eval.py

Five evaluation sets (`benchmarks/data/safety_eval_*.csv`), each written for this project by a
helper session that read neither the screen's rules nor the other sets; docs/safety.md tells the
sequence. Each set was measured once on the screen as it stood, and then became tuning data:

- `safety_eval_set.csv` (492 texts; split once by the SHA-256 of each text into `tune` and
  `held_out`), `safety_eval_fresh.csv` (433), `safety_eval_third.csv` (380, compliance and benign),
  `safety_eval_fourth.csv` (548): training data of both classifiers now
  (`benchmarks/build_safety_training.py`), and what the rules were generalised from.
- `safety_eval_fifth.csv` (526): written after the screen was frozen; nothing was tuned on it and
  the training build never reads it. It is the honest figure.

Each text is screened as the body of a variant with an empty subject, under the sample campaign's
blocklists, with a valid citation, no approved URLs and no source text, through the pipeline's own
screening path (`safety.screening.screen` with the embedded backend's `analyze`). A text counts
as caught when the screen blocks it, for any reason.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from personalization_assets.backends import local_safety
from personalization_assets.safety.policy import CATEGORIES, SafetyPolicy
from personalization_assets.safety.rules import find_compliance_hits
from personalization_assets.safety.screening import Screened, screen

FIXTURE_PATH = Path(__file__).resolve().parents[1] / "personalization_assets_tests" / "fixtures" / "safety_labelled.csv"
EVAL_SET_PATH = Path(__file__).resolve().parent / "data" / "safety_eval_set.csv"
FOURTH_SET_PATH = Path(__file__).resolve().parent / "data" / "safety_eval_fourth.csv"
FIFTH_SET_PATH = Path(__file__).resolve().parent / "data" / "safety_eval_fifth.csv"
FRESH_SET_PATH = Path(__file__).resolve().parent / "data" / "safety_eval_fresh.csv"
THIRD_SET_PATH = Path(__file__).resolve().parent / "data" / "safety_eval_third.csv"
HARM_LABELS = ("Hate", "SelfHarm", "Sexual", "Violence")
FIXTURE_POLICY = SafetyPolicy(
    blocklists={
        "competitor_names": ("Southpaw Gear", "Fjellhaus", "TrailKing"),
        "banned_claims": ("miracle", "cure", "risk-free", "no risk", "guaranteed results", "lifetime guarantee"),
    },
    policy_version="fixture",
)
FIXTURE_COMPLIANCE_KWARGS: Mapping[str, object] = {
    "approved_urls": (),
    "citations": ("DOC-001",),
    "retrieved_ids": ("DOC-001",),
    "source_text": "",
}
BENIGN = "benign"


@dataclass(frozen=True)
class LabelScore:
    label: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else math.nan

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else math.nan


@dataclass(frozen=True)
class Evaluation:
    scores: tuple[LabelScore, ...]
    harmful_blocked: int
    harmful_total: int
    benign_blocked: int
    benign_total: int

    @property
    def harmful_block_rate(self) -> float:
        return self.harmful_blocked / self.harmful_total

    @property
    def benign_block_rate(self) -> float:
        return self.benign_blocked / self.benign_total

    def score(self, label: str) -> LabelScore:
        return next(score for score in self.scores if score.label == label)


def load_labelled(path: Path = FIXTURE_PATH) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["expected"]) for row in csv.DictReader(handle)]


def predicted_labels(screen: Screened, policy: SafetyPolicy) -> set[str]:
    """The fixture labels a screen result supports; "benign" is the absence of all of them."""
    labels = {f"unsafe:{c}" for c in CATEGORIES if screen.severities[c] >= policy.block_severity}
    labels |= {"blocklist"} if screen.blocklist_hits else set()
    labels |= {f"compliance:{rule_id}" for rule_id in screen.rule_hits}
    return labels


def evaluate(
    labelled: Iterable[tuple[str, str]],
    policy: SafetyPolicy = FIXTURE_POLICY,
    compliance_kwargs: Mapping[str, object] = FIXTURE_COMPLIANCE_KWARGS,
) -> Evaluation:
    """Per-label precision/recall (one label per text) and block rates over labelled texts."""
    labelled = list(labelled)
    texts = [text for text, _ in labelled]
    rule_hits = [find_compliance_hits("", text, **compliance_kwargs) for text in texts]  # type: ignore[arg-type]
    screened = screen([""] * len(texts), texts, rule_hits, policy=policy,
                      analyze=lambda batch: local_safety.analyze(batch, policy.blocklists))
    outcomes = [(expected, result) for (_, expected), result in zip(labelled, screened, strict=True)]
    labels = sorted({expected for expected, _ in outcomes} - {BENIGN})
    predictions = [(expected, predicted_labels(screen, policy)) for expected, screen in outcomes]
    scores = tuple(
        LabelScore(
            label,
            true_positives=sum(expected == label and label in predicted for expected, predicted in predictions),
            false_positives=sum(expected != label and label in predicted for expected, predicted in predictions),
            false_negatives=sum(expected == label and label not in predicted for expected, predicted in predictions),
        )
        for label in labels
    )
    harmful = [screen.decision.blocked for expected, screen in outcomes if expected != BENIGN]
    benign = [screen.decision.blocked for expected, screen in outcomes if expected == BENIGN]
    return Evaluation(scores, sum(harmful), len(harmful), sum(benign), len(benign))


def format_report(evaluation: Evaluation) -> str:
    lines = [f"{'label':<38}{'n':>4}{'precision':>11}{'recall':>8}"]
    for score in evaluation.scores:
        n = score.true_positives + score.false_negatives
        lines.append(f"{score.label:<38}{n:>4}{score.precision:>11.2f}{score.recall:>8.2f}")
    lines.append(
        f"harmful texts blocked: {evaluation.harmful_blocked}/{evaluation.harmful_total} "
        f"({evaluation.harmful_block_rate:.1%})"
    )
    lines.append(
        f"benign texts blocked:  {evaluation.benign_blocked}/{evaluation.benign_total} "
        f"({evaluation.benign_block_rate:.1%})"
    )
    return "\n".join(lines)


def load_eval_set(path: Path = EVAL_SET_PATH, split: str | None = None) -> list[tuple[str, str]]:
    """(text, label) rows of an evaluation set, optionally one split of it."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle) if split is None or row.get("split") == split]


@dataclass(frozen=True)
class BlockRates:
    """Per label: texts blocked of texts labelled; and the totals by kind."""

    per_label: dict[str, tuple[int, int]]

    def total(self, labels: Iterable[str]) -> tuple[int, int]:
        pairs = [self.per_label[label] for label in labels if label in self.per_label]
        return sum(b for b, _ in pairs), sum(n for _, n in pairs)

    @property
    def harmful(self) -> tuple[int, int]:
        return self.total(HARM_LABELS)

    @property
    def compliance(self) -> tuple[int, int]:
        return self.total(label for label in self.per_label if label.startswith("compliance:"))

    @property
    def benign(self) -> tuple[int, int]:
        return self.per_label.get(BENIGN, (0, 0))


def block_rates(labelled: Iterable[tuple[str, str]], policy: SafetyPolicy = FIXTURE_POLICY,
                compliance_kwargs: Mapping[str, object] = FIXTURE_COMPLIANCE_KWARGS) -> BlockRates:
    """How many texts of each label the screen blocks (for any reason), through the pipeline's path."""
    labelled = list(labelled)
    texts = [text for text, _ in labelled]
    rule_hits = [find_compliance_hits("", text, **compliance_kwargs) for text in texts]  # type: ignore[arg-type]
    screened = screen([""] * len(texts), texts, rule_hits, policy=policy,
                      analyze=lambda batch: local_safety.analyze(batch, policy.blocklists))
    per_label: dict[str, tuple[int, int]] = {}
    for (_, label), result in zip(labelled, screened, strict=True):
        blocked, total = per_label.get(label, (0, 0))
        per_label[label] = (blocked + result.decision.blocked, total + 1)
    return BlockRates(dict(sorted(per_label.items())))


def format_block_rates(rates: BlockRates, title: str) -> str:
    lines = [title, f"{'label':<38}{'blocked':>9}{'n':>5}{'rate':>8}"]
    for label, (blocked, n) in rates.per_label.items():
        lines.append(f"{label:<38}{blocked:>9}{n:>5}{blocked / n:>8.1%}")
    for name, (blocked, n) in (("harmful (4 categories)", rates.harmful), ("compliance (5 rules)", rates.compliance),
                               ("benign (false positives)", rates.benign)):
        if not n:
            continue  # a set without this kind of text
        lines.append(f"{name:<38}{blocked:>9}{n:>5}{blocked / n:>8.1%}")
    return "\n".join(lines)


def main() -> None:
    print(format_block_rates(block_rates(load_eval_set(FIFTH_SET_PATH)), "fifth set, held out (nothing tuned on it):"))
    trained_on = (("fourth set", FOURTH_SET_PATH, None), ("third set", THIRD_SET_PATH, None), ("fresh set", FRESH_SET_PATH, None),
                  ("first set, held_out half", EVAL_SET_PATH, "held_out"), ("first set, tune half", EVAL_SET_PATH, "tune"))
    for title, path, split in trained_on:
        print()
        print(format_block_rates(block_rates(load_eval_set(path, split)), f"{title} (training data now: in-sample):"))
    print()
    print("fixture (personalization_assets_tests/fixtures/safety_labelled.csv; part of the classifiers' training texts):")
    print(format_report(evaluate(load_labelled())))


if __name__ == "__main__":
    main()
