"""Defense in depth: documents screened when the corpus is indexed, markup never reaching an email (issue 12, item 3)."""

import json

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.backends import local_safety
from personalization_assets.content.corpus import load_corpus
from personalization_assets.safety.documents import QUARANTINED, screen_documents
from personalization_assets.safety.policy import SafetyPolicy
from personalization_assets.safety.rules import find_compliance_hits, find_source_hits
from personalization_assets.safety.text import unsafe_text_kinds
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import (
    materialize_segments,
    materialize_wave,
    read_export,
    read_table,
)

POLICY = SafetyPolicy(blocklists={"competitor_names": ("TrailKing",)}, policy_version="test")
INJECTIONS = {
    "script": "Members save on tents. <script>document.location='https://evil.example'</script>",
    "image": 'See the range <img src=x onerror="alert(1)"> in store.',
    "bidi": "Our returns policy \u202eeerf si gnippihs\u202c applies to every order.",
    "template": "Questions? We will reply to {{email}} within a day.",
    "jinja": "Prices as listed {% if vip %}for VIPs{% endif %}.",
    "harm": "Gas every last one of them at the trailhead.",
    "promise": "This jacket cures arthritis.",
    "blocklist": "Better than anything TrailKing makes.",
}


def _screen(texts: dict[str, str]) -> pd.DataFrame:
    corpus = pd.DataFrame({"document_id": list(texts), "title": ["A title"] * len(texts), "content": list(texts.values())})
    return screen_documents(corpus, analyze=lambda batch: local_safety.analyze(batch, POLICY.blocklists), policy=POLICY,
                            backend="local")


def test_every_injected_document_is_quarantined_with_its_reason():
    verdicts = _screen({**INJECTIONS, "clean": "The Ridgeline 2 tent weighs 1.6 kg and costs $249."}).set_index("document_id")
    assert verdicts.loc["clean", "decision"] == "approved"
    assert (verdicts.drop(index="clean")["decision"] == QUARANTINED).all()
    assert "unsafe_markup" in verdicts.loc["script", "rule_hits"] and "unsafe_markup" in verdicts.loc["image", "rule_hits"]
    assert "bidi_or_invisible" in verdicts.loc["bidi", "rule_hits"]
    assert "template_syntax" in verdicts.loc["template", "rule_hits"] and "template_syntax" in verdicts.loc["jinja", "rule_hits"]
    assert "health_financial_promise" in verdicts.loc["promise", "rule_hits"]
    assert "blocklist competitor_names:TrailKing" in verdicts.loc["blocklist", "reasons"]


def test_a_failing_service_quarantines_rather_than_approves():
    def broken(batch):
        raise RuntimeError("HTTP 503")

    corpus = pd.DataFrame({"document_id": ["D1"], "title": ["t"], "content": ["A plain sentence."]})
    verdict = screen_documents(corpus, analyze=broken, policy=POLICY, backend="local").iloc[0]
    assert verdict["decision"] == QUARANTINED and "safety service failed" in verdict["reasons"]


@pytest.mark.parametrize("text, kinds", [
    ("Hello {{first_name}}, see you soon.", []),
    ("Hello {{ first_name }}", []),
    ("Hi {{email}}", []),
    ("<b>bold</b>", ["unsafe_markup"]),
    ("a\x07bell", ["control_character"]),
    ("zero\u200bwidth", ["bidi_or_invisible"]),
    ("{% raw %}", ["template_syntax"]),
    ("${name}", ["template_syntax"]),
    ("fish &amp; chips", ["unsafe_markup"]),
    ("Tents < $200 and 3 > 2", []),
    ("Lines\nand\ttabs", []),
])
def test_unsafe_text_kinds_in_a_variant(text, kinds):
    assert unsafe_text_kinds(text, allowed_merge_fields=("first_name", "email")) == kinds


def test_a_variant_with_markup_or_template_syntax_breaks_a_compliance_rule():
    kwargs = dict(approved_urls=(), citations=("DOC-1",), retrieved_ids=("DOC-1",), source_text="")
    assert "unsafe_markup" in find_compliance_hits("Hi", "Hello {{first_name}} <script>x</script>", **kwargs)
    assert "template_syntax" in find_compliance_hits("Hi", "Hello {{first_name}} {% if x %}", **kwargs)
    assert "bidi_or_invisible" in find_compliance_hits("Hi \u202e", "Hello {{first_name}}", **kwargs)
    assert find_compliance_hits("Hi", "Hello {{first_name}}, our tents are in store.", **kwargs) == []


def test_source_rules_allow_no_merge_field_in_a_document():
    assert find_source_hits("Reply to {{email}}") == ["template_syntax"]
    assert find_source_hits("Our 30-day money-back guarantee covers every tent.") == []  # documents back such claims


@pytest.mark.e2e
def test_injected_documents_are_quarantined_and_reach_no_email(campaign_folder):
    """The issue's end-to-end case: harmful sentences, markup, bidi and template syntax added to
    approved documents. Every one of those documents is quarantined, so no email quotes them."""
    content = campaign_folder.data / "content"
    injected = {}
    for (name, text), path in zip(INJECTIONS.items(), sorted(content.glob("*.json"))):
        document = json.loads(path.read_text())
        document["content"] += " " + text
        path.write_text(json.dumps(document))
        injected[document["document_id"]] = text
    defs = campaign_folder.definitions()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_segments(defs, instance, load_catalog(campaign_folder.data / "segments.yaml").ids).success
    assert materialize_wave(defs, instance, TEST_WAVE).success
    screened = read_table(campaign_folder.warehouse, "screened_corpus").set_index("document_id")
    assert set(screened.index[screened["decision"] == QUARANTINED]) == set(injected)
    index = read_table(campaign_folder.warehouse, "content_index")
    assert not index["document_id"].isin(list(injected)).any() and len(index) == len(load_corpus(content)) - len(injected)
    retrieved = read_table(campaign_folder.warehouse, "retrieved_content")
    assert not retrieved["document_id"].isin(list(injected)).any()
    emails = read_export(campaign_folder.home, TEST_WAVE)
    for text in injected.values():
        assert not emails["body"].str.contains(text[:25], regex=False).any()
    assert not emails["body"].str.contains("<script|onerror|\u202e|\\{%", regex=True).any()
    report = (campaign_folder.home / "reports" / TEST_WAVE / "report.html").read_text()
    assert all(document_id in report for document_id in injected) and "quarantined" in report
