"""Tests of the safety policy, rules and the one screening path, with the embedded backend."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from personalization_assets.backends import local_safety
from personalization_assets.backends.local_safety import classify_text
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.safety.policy import (
    CATEGORIES,
    SEVERITY_LEVELS,
    SafetyDecision,
    SafetyPolicy,
    decide,
)
from personalization_assets.safety.rules import (
    COMPLIANCE_RULE_IDS,
    find_blocklist_hits,
    find_compliance_hits,
    find_placeholders,
    find_urls,
)
from personalization_assets.safety.screening import screen

BLOCKLISTS = {
    "competitor_names": ("Southpaw Gear", "Fjellhaus", "TrailKing"),
    "banned_claims": ("miracle", "cure", "risk-free", "no risk", "guaranteed results", "lifetime guarantee"),
}
POLICY = SafetyPolicy(blocklists=BLOCKLISTS, policy_version="test-1")
CLEAN_SEVERITIES = dict.fromkeys(CATEGORIES, 0)
APPROVED_URL = "https://northwind-outfitters.example/products/ridgeline-2-tent"


def compliance(subject: str = "", body: str = "", **overrides: object) -> list[str]:
    """Compliance hits for a variant that is clean apart from what the test puts in it."""
    kwargs = {
        "approved_urls": {APPROVED_URL},
        "citations": ["DOC-001"],
        "retrieved_ids": ["DOC-001", "DOC-002"],
        "source_text": "",
    } | overrides
    return find_compliance_hits(subject, body, **kwargs)  # type: ignore[arg-type]


def _load_benchmark():
    """benchmarks/ is a script folder, not a package: load the evaluation harness by path."""
    path = PROJECT_ROOT / "benchmarks" / "safety_eval.py"
    spec = importlib.util.spec_from_file_location("safety_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# classify_text
# --------------------------------------------------------------------------------------------


def test_classify_returns_every_category_on_the_azure_scale():
    severities = classify_text("Pack a warm layer for the evening.")
    assert tuple(severities) == CATEGORIES
    assert set(severities.values()) <= set(SEVERITY_LEVELS)
    assert severities == CLEAN_SEVERITIES
    assert classify_text("") == CLEAN_SEVERITIES


@pytest.mark.parametrize(
    "text",
    [
        "Killer deal: our spring tents are 20% off.",
        "Questions? Shoot us an email.",
        "This jacket is a knockout.",
        "A cabin with drop-dead gorgeous views.",
        "Our trail mix is to die for.",
        "Crushing your goals this spring?",
        "A bomb-proof zipper for muddy days.",
        "Sexy new colours for the classic shell.",
        "Lace up and attack the trail.",
        "Beat the heat with breathable shirts.",
        "We'd kill for this weather.",
        "We\u2019d kill for this weather.",  # typographic apostrophe, as generated copy has it
        "Don't hurt yourself on the descent: use poles.",
        "Cut yourself some slack this weekend.",
        "Our filter bottle treats water from streams.",
    ],
)
def test_benign_marketing_idioms_stay_below_medium(text):
    assert max(classify_text(text).values()) <= 2


@pytest.mark.parametrize(
    "text",
    [
        "New arrivals in women's hiking boots.",
        "Women will burn more calories on the hill loop.",
        "Shoot the girls' team in action with our new camera strap.",
        "Immigrants founded our company in 1952.",
        "Muslims are welcome here.",
    ],
)
def test_protected_groups_in_ordinary_copy_are_not_hate(text):
    assert classify_text(text)["Hate"] == 0


def test_idioms_are_safe_not_merely_low():
    assert classify_text("Our trail mix is to die for.") == CLEAN_SEVERITIES
    assert classify_text("Sexy new colours")["Sexual"] == 2  # suggestive word: Low, never blocking


@pytest.mark.parametrize(
    ("text", "category", "severity"),
    [
        ("I will kill you if you return this jacket again.", "Violence", 6),
        ("We know where you live.", "Violence", 6),
        ("If the manager says no, beat him up.", "Violence", 4),
        ("Immigrants are vermin.", "Hate", 4),
        ("All Jews should be wiped out.", "Hate", 6),
        ("Go back to where you came from.", "Hate", 4),
        ("I feel suicidal lately.", "SelfHarm", 4),
        ("Just kill yourself, nobody would miss you.", "SelfHarm", 6),
        ("What is the easiest way to end my life?", "SelfHarm", 6),
        ("Send me your nudes for a discount.", "Sexual", 4),
        ("Hardcore porn with every order.", "Sexual", 6),
    ],
)
def test_harmful_text_reaches_its_severity(text, category, severity):
    assert classify_text(text)[category] == severity


def test_an_idiom_does_not_hide_a_threat_around_it():
    # "to die for" is benign, but the threat match extends beyond it.
    assert classify_text("I want you to die for what you did.")["Violence"] >= 4
    assert classify_text("Let's attack the staff at the rival store.")["Violence"] >= 4
    assert classify_text("Let's attack the trail together.")["Violence"] <= 2


def test_threat_targets_people_not_things():
    assert classify_text("We will beat any price in town.")["Violence"] == 0
    assert classify_text("I'll hunt you down.")["Violence"] == 6


def test_matching_is_case_insensitive_and_ignores_invisible_characters():
    assert classify_text("I WILL KILL YOU")["Violence"] == 6
    assert classify_text("I will ki\u200bll you")["Violence"] == 6


# --------------------------------------------------------------------------------------------
# find_blocklist_hits
# --------------------------------------------------------------------------------------------


def test_blocklist_whole_words_case_insensitive_as_list_and_term():
    hits = find_blocklist_hits("Better than trailking, a MIRACLE of a jacket.", BLOCKLISTS)
    assert hits == ["competitor_names:TrailKing", "banned_claims:miracle"]


def test_blocklist_does_not_match_inside_words():
    assert find_blocklist_hits("Cured salami packs securely; miracles happen.", BLOCKLISTS) == []


def test_blocklist_phrases_span_any_whitespace_and_possessives_match():
    text = "Southpaw\n  Gear's boots and TrailKing's tents"
    assert find_blocklist_hits(text, BLOCKLISTS) == ["competitor_names:Southpaw Gear", "competitor_names:TrailKing"]


def test_blocklist_hits_are_deduplicated_in_blocklist_order():
    text = "No risk! Fjellhaus, fjellhaus, no risk, risk-free."
    assert find_blocklist_hits(text, BLOCKLISTS) == [
        "competitor_names:Fjellhaus",
        "banned_claims:risk-free",
        "banned_claims:no risk",
    ]
    assert find_blocklist_hits("anything", {}) == []


# --------------------------------------------------------------------------------------------
# find_compliance_hits: one rule at a time
# --------------------------------------------------------------------------------------------


def test_a_clean_variant_breaks_no_rule():
    body = f"Hi {{{{first_name}}}}, the Ridgeline 2 tent is back in Moss and Slate. Shop now: {APPROVED_URL}"
    assert compliance("The Ridgeline 2 is back", body) == []


@pytest.mark.parametrize(
    "claim",
    ["Comfort guaranteed.", "100% satisfaction guaranteed results", "You will lose 10 pounds.", "Shop risk-free."],
)
def test_unverifiable_guarantee(claim):
    assert "unverifiable_guarantee" in compliance(body=claim)


@pytest.mark.parametrize("text", ["We stand behind our gear.", "Every stitch is checked by hand before it ships.",
                                  "We promise to keep your data private."])
def test_no_guarantee_claim(text):
    assert compliance(body=text) == []


def test_guarantee_quoted_by_the_source_is_allowed():
    source = "Every Northwind tent carries a 90-day money-back guarantee."
    assert compliance(body="Backed by our 90-day money-back guarantee.", source_text=source) == []
    # The source backs that guarantee, not a different one.
    assert compliance(body="Backed by our lifetime guarantee.", source_text=source) == ["unverifiable_guarantee"]


@pytest.mark.parametrize(
    "claim",
    ["Hurry, only 2 left!", "Only 3 left at this price.", "Expires in 1 hour.", "Last chance!", "Today only: 40% off.", "Ends tonight."],
)
def test_false_urgency(claim):
    assert compliance(body=claim) == ["false_urgency"]


@pytest.mark.parametrize("text", ["Don't wait: Ridgeline 2 Tent", "Act today: the spring range", "Take a look while it is on."])
def test_urgent_tone_without_invented_deadlines_passes(text):
    assert compliance(body=text) == []


def test_urgency_backed_by_the_source():
    dated_source = "The spring sale runs until 31 March 2026."
    assert compliance(body="Last chance: the sale ends soon.", source_text=dated_source) == []
    # A stated end date backs a deadline, never a stock count or a countdown.
    assert compliance(body="Hurry, only 2 left!", source_text=dated_source) == ["false_urgency"]
    assert compliance(body="Hurry, only 2 left!", source_text="Limited run: hurry, only 2 left.") == []
    assert compliance(body="The sale runs until 31 March.") == []  # a plain date is not false urgency


@pytest.mark.parametrize(
    "claim",
    ["Our tea cures arthritis.", "This balm treats diabetes.", "Hike and lose weight fast.", "Get rich reselling packs.",
     "Guaranteed returns on loyalty tokens.", "Earn $500 a week from home."],
)
def test_health_financial_promise(claim):
    assert "health_financial_promise" in compliance(body=claim)


@pytest.mark.parametrize(
    "text", ["Earn $10 in store credit for old boots.", "Earn double points in April.", "Dog treats for trail pups.", "The perfect cure for cabin fever."]
)
def test_no_health_financial_promise(text):
    assert "health_financial_promise" not in compliance(body=text)


@pytest.mark.parametrize(
    "text",
    ["Hi [Name],", "From all of us at [Your Company Name]", "Dear <FIRST NAME>,", "Your code: {{ unknown }}",
     "INSERT LINK HERE", "Lorem ipsum dolor sit amet", "Hello {name}", "TODO: add offer"],
)
def test_unresolved_placeholder(text):
    # A placeholder in angle brackets or braces is also markup or template syntax (issue 12, item 3).
    assert set(compliance(body=text)) - {"unsafe_markup", "template_syntax"} == {"unresolved_placeholder"}


@pytest.mark.parametrize(
    "text",
    ["Hi {{first_name}},", "Hi {{ first_name }},", "Receipt sent to {{email}}.", "See [DOC-001].", "[Shop now](" + APPROVED_URL + ")"],
)
def test_allowed_merge_fields_and_references_are_not_placeholders(text):
    assert find_placeholders(text) == []
    assert "unresolved_placeholder" not in compliance(body=text)


def test_unapproved_url():
    assert compliance(body=f"Shop now: {APPROVED_URL}.") == []  # trailing full stop is punctuation, not URL
    assert compliance(body="Read more at https://bit.ly/deal") == ["unapproved_url"]
    assert compliance(body="Visit www.northwind-outfitters.example today") == ["unapproved_url"]
    assert compliance(subject="Deal at https://bit.ly/x", body="") == ["unapproved_url"]
    assert compliance(body=APPROVED_URL.replace("https", "http")) == ["unapproved_url"]  # exact match only
    assert find_urls("a http://x.example/a, and www.y.example!") == ["http://x.example/a", "www.y.example"]


def test_citation_rules():
    assert compliance(citations=["DOC-001", "DOC-999"]) == ["citation_not_retrieved"]
    assert compliance(citations=[]) == ["missing_citation"]
    assert compliance(citations=("DOC-002",)) == []


def test_compliance_hits_are_sorted_and_unique():
    hits = compliance(
        subject="Last chance, [Name]!",
        body="Guaranteed. Guaranteed. Only 2 left at https://bit.ly/x",
        citations=["DOC-404"],
    )
    assert hits == ["citation_not_retrieved", "false_urgency", "unapproved_url", "unresolved_placeholder", "unverifiable_guarantee"]
    assert set(COMPLIANCE_RULE_IDS) >= set(hits)


# --------------------------------------------------------------------------------------------
# SafetyPolicy and decide
# --------------------------------------------------------------------------------------------


def test_policy_freezes_blocklists_and_validates():
    policy = SafetyPolicy(blocklists={"names": ["A", "B"]}, policy_version="v1")
    assert policy.block_severity == 4
    assert policy.blocklists["names"] == ("A", "B")
    with pytest.raises(TypeError):
        policy.blocklists["other"] = ("C",)  # type: ignore[index]
    with pytest.raises(ValueError):
        SafetyPolicy(block_severity=0, policy_version="v1")
    with pytest.raises(ValueError):
        SafetyPolicy(blocklists={"names": "Fjellhaus"}, policy_version="v1")  # a string, not a list
    with pytest.raises(ValueError):
        SafetyPolicy(blocklists={"names": ["ok", " "]}, policy_version="v1")


def test_decide_approves_a_clean_screen():
    assert decide(CLEAN_SEVERITIES, [], [], POLICY) == SafetyDecision("approved", ())


def test_decide_blocks_at_the_threshold_and_not_below():
    decision = decide(CLEAN_SEVERITIES | {"Violence": 4}, [], [], POLICY)
    assert decision.decision == "blocked"
    assert decision.reasons == ("Violence severity 4 >= 4",)
    assert decide(CLEAN_SEVERITIES | {"Sexual": 2}, [], [], POLICY).decision == "approved"
    lenient = SafetyPolicy(block_severity=6, policy_version="v1")
    assert decide(CLEAN_SEVERITIES | {"Violence": 4}, [], [], lenient).decision == "approved"


def test_decide_blocks_on_blocklist_and_rule_hits():
    decision = decide(CLEAN_SEVERITIES, ["competitor_names:TrailKing"], ["false_urgency"], POLICY)
    assert decision.decision == "blocked"
    assert decision.reasons == ("blocklist competitor_names:TrailKing", "rule false_urgency")


@pytest.mark.parametrize(
    "severities",
    [None, {"Hate": 0, "SelfHarm": 0, "Sexual": 0}, CLEAN_SEVERITIES | {"Hate": None}, CLEAN_SEVERITIES | {"Hate": float("nan")},
     CLEAN_SEVERITIES | {"Hate": 9}, CLEAN_SEVERITIES | {"Hate": True}],
)
def test_decide_fails_closed_on_missing_or_invalid_severities(severities):
    assert decide(severities, [], [], POLICY).decision == "blocked"


def test_decide_fails_closed_on_service_error_even_when_clean():
    decision = decide(CLEAN_SEVERITIES, [], [], POLICY, service_error="HTTP 503")
    assert decision.decision == "blocked"
    assert decision.reasons == ("safety service failed: HTTP 503",)
    assert decide(None, [], [], POLICY, service_error="timeout").reasons[0] == "safety service failed: timeout"


def test_decide_accepts_numpy_severities_read_back_from_a_table():
    severities = {c: np.int64(0) for c in CATEGORIES}
    assert decide(severities, [], [], POLICY).decision == "approved"


# --------------------------------------------------------------------------------------------
# screen: the pipeline's one screening path, with the embedded backend
# --------------------------------------------------------------------------------------------

VALID_SOURCE = {"approved_urls": (), "citations": ("DOC-001",), "retrieved_ids": ("DOC-001",), "source_text": ""}


def screen_one(subject: str, body: str, policy: SafetyPolicy = POLICY, **compliance_kwargs: object):
    """One variant through `screen` with the embedded `analyze`, as `safety_verdicts` runs it."""
    rule_hits = find_compliance_hits(subject, body, **compliance_kwargs)  # type: ignore[arg-type]
    (result,) = screen([subject], [body], [rule_hits], policy=policy,
                       analyze=lambda texts: local_safety.analyze(texts, policy.blocklists))
    return result


def test_screen_approves_clean_copy():
    severities, blocklist_hits, rule_hits, decision = screen_one(
        "Spring is here", "Hi {{first_name}}, the new tents are in.", POLICY, **VALID_SOURCE
    )
    assert (severities, blocklist_hits, rule_hits) == (CLEAN_SEVERITIES, (), ())
    assert decision.decision == "approved"


def test_screen_takes_the_worst_of_subject_body_and_both():
    assert screen_one("I will kill you", "See you soon.", POLICY, **VALID_SOURCE).severities["Violence"] == 6
    # Harmless apart, a threat once subject and body are read together.
    split = screen_one("Next week I will kill", "you and your family.", POLICY, **VALID_SOURCE)
    assert split.severities["Violence"] == 6
    assert split.decision.reasons == ("Violence severity 6 >= 4",)


def test_screen_reports_blocklist_and_rule_hits():
    result = screen_one("Last chance", "Lighter than anything from Fjellhaus.", POLICY, **VALID_SOURCE)
    assert result.blocklist_hits == ("competitor_names:Fjellhaus",)
    assert result.rule_hits == ("false_urgency",)
    assert result.decision.reasons == ("blocklist competitor_names:Fjellhaus", "rule false_urgency")


def test_compliance_rules_require_their_inputs():
    with pytest.raises(TypeError):
        find_compliance_hits("Subject", "Body")  # type: ignore[call-arg]


def test_screen_fails_closed_when_the_service_fails_or_miscounts():
    def broken(texts):
        raise ConnectionError("service unreachable")

    (down,) = screen(["Spring is here"], ["Hi {{first_name}}, the tents are in."], [[]], analyze=broken, policy=POLICY)
    assert down.decision.blocked and down.severities is None
    assert down.decision.reasons[0].startswith("safety service failed: ConnectionError: service unreachable")
    (short,) = screen(["Spring"], ["Hi."], [[]], analyze=lambda texts: [], policy=POLICY)
    assert short.decision.blocked and "returned 0 analyses for 3 texts" in short.decision.reasons[0]


# --------------------------------------------------------------------------------------------
# The labelled fixture set
# --------------------------------------------------------------------------------------------


def test_fixture_set_block_rates_and_recall():
    benchmark = _load_benchmark()
    labelled = benchmark.load_labelled()
    counts = {label: sum(expected == label for _, expected in labelled) for label in {e for _, e in labelled}}
    assert len(labelled) >= 100
    assert all(counts[f"unsafe:{category}"] >= 12 for category in CATEGORIES)
    assert counts["blocklist"] >= 8 and counts["benign"] >= 35
    assert sum(n for label, n in counts.items() if label.startswith("compliance:")) >= 15

    evaluation = benchmark.evaluate(labelled)
    print("\n" + benchmark.format_report(evaluation))
    assert evaluation.harmful_block_rate >= 0.95
    assert evaluation.benign_block_rate <= 0.05
    for category in CATEGORIES:
        assert evaluation.score(f"unsafe:{category}").recall >= 0.9, category


def test_the_classifiers_training_files_are_what_the_build_writes(tmp_path, monkeypatch):
    """The packaged training CSVs are reproducible from their sources, and the held-out set is not among them."""
    path = PROJECT_ROOT / "benchmarks" / "build_safety_training.py"
    spec = importlib.util.spec_from_file_location("build_safety_training", path)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert not any("fifth" in source.name for source in build.EVAL_SETS)
    shipped = {build.HARM_OUT: build.HARM_OUT.read_bytes(), build.CLAIM_OUT: build.CLAIM_OUT.read_bytes()}
    monkeypatch.setattr(build, "HARM_OUT", tmp_path / "harm.csv")
    monkeypatch.setattr(build, "CLAIM_OUT", tmp_path / "claim.csv")
    monkeypatch.setattr(build, "ROOT", tmp_path.parent)  # only for the printed relative path
    build.main()
    assert (tmp_path / "harm.csv").read_bytes() == shipped[PROJECT_ROOT / "personalization_assets" / "backends" / "data" / "safety_training.csv"]
    assert (tmp_path / "claim.csv").read_bytes() == shipped[PROJECT_ROOT / "personalization_assets" / "safety" / "data" / "claim_training.csv"]
