"""The segment catalog (parsing, validation) and vectorized first-match-wins segmentation."""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from personalization_assets.audience.customers import load_customers
from personalization_assets.audience.segmentation import (
    SegmentCatalog,
    assign_segments,
    check_rules_against_customers,
    load_catalog,
    segment_sizes,
)
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.sample_data import generate_customers
from personalization_assets_tests.pure_fixtures import CUSTOMERS_CSV, SEGMENTS_PATH


def segment(id_: str, rule, **extra) -> dict:
    return {"id": id_, "name": id_.replace("_", " "), "description": f"About {id_}.", "rule": rule,
            "audiences": ["All"], **extra}


def write_catalog(tmp_path: Path, segments: list[dict]) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(yaml.safe_dump({"segments": segments}, sort_keys=False))
    return path


def catalog_error(tmp_path: Path, segments: list[dict]) -> str:
    path = write_catalog(tmp_path, segments)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.file == str(path)
    return message


# --- parsing -----------------------------------------------------------------------------------------


def test_committed_catalog_parses_in_order():
    catalog = load_catalog(SEGMENTS_PATH)
    assert catalog.ids[-1] == "core_customers"
    assert catalog.segments[-1].is_catch_all
    assert not any(s.is_catch_all for s in catalog.segments[:-1])
    assert len(set(catalog.ids)) == len(catalog.ids)
    for s in catalog.segments:
        assert s.description and "\n" not in s.description and "  " not in s.description
        assert s.audiences
    vip = catalog.get("vip_champions")
    assert {(c.column, c.operator, c.value) for c in vip.conditions} == {
        ("tier", "==", "Gold"), ("purchase_frequency", ">=", 10), ("last_engagement_days", "<=", 60)
    }


def test_valid_small_catalog(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, [segment("young", {"age": {"<": 30}}), segment("rest", "all")]))
    assert catalog.ids == ["young", "rest"]
    assert catalog.get("young").rule_text() == "age < 30"
    assert catalog.get("rest").rule_text() == "everyone not matched above"


def test_get_unknown_segment_names_the_known_ones(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, [segment("rest", "all")]))
    with pytest.raises(KeyError, match="'nope'.*rest"):
        catalog.get("nope")


def test_no_catch_all_last(tmp_path):
    message = catalog_error(tmp_path, [segment("young", {"age": {"<": 30}}), segment("old", {"age": {">=": 30}})])
    assert "last segment must be a catch-all" in message
    assert "rule: all" in message


def test_catch_all_not_last(tmp_path):
    message = catalog_error(
        tmp_path, [segment("everyone", "all"), segment("young", {"age": {"<": 30}}), segment("rest", "all")]
    )
    assert "only the last segment may be a catch-all" in message
    assert "everyone" in message


def test_duplicate_ids(tmp_path):
    message = catalog_error(
        tmp_path, [segment("young", {"age": {"<": 30}}), segment("young", {"age": {"<": 40}}), segment("rest", "all")]
    )
    assert "must be unique" in message
    assert "young" in message


@pytest.mark.parametrize("bad_id", ["VIP", "1st", "has-dash", "", "has space", "x" * 64])
def test_bad_id(tmp_path, bad_id):
    message = catalog_error(tmp_path, [segment(bad_id, {"age": {"<": 30}}), segment("rest", "all")])
    assert repr(bad_id) in message
    assert "partition key" in message
    assert "segments[0]" in message


def test_unknown_operator(tmp_path):
    message = catalog_error(tmp_path, [segment("young", {"age": {"=~": 30}}), segment("rest", "all")])
    assert "unknown operator '=~'" in message
    assert "'age'" in message and "segment 'young'" in message
    assert "between" in message  # lists the operators that do exist


@pytest.mark.parametrize("value", [[18], [18, 30, 40], 18, "18-30"])
def test_between_needs_two_values(tmp_path, value):
    message = catalog_error(tmp_path, [segment("young", {"age": {"between": value}}), segment("rest", "all")])
    assert "'between' on 'age' needs [low, high]" in message
    assert "segment 'young'" in message


def test_in_needs_a_list(tmp_path):
    message = catalog_error(tmp_path, [segment("gold", {"tier": {"in": "Gold"}}), segment("rest", "all")])
    assert "'in' on 'tier' needs a list" in message


@pytest.mark.parametrize("key", ["description", "name", "audiences"])
def test_missing_key(tmp_path, key):
    broken = segment("young", {"age": {"<": 30}})
    del broken[key]
    message = catalog_error(tmp_path, [broken, segment("rest", "all")])
    assert f"segment 'young': missing '{key}'" in message


def test_blank_description(tmp_path):
    message = catalog_error(tmp_path, [segment("young", {"age": {"<": 30}}, description="  "), segment("rest", "all")])
    assert "missing 'description'" in message


@pytest.mark.parametrize("rule", [None, "everyone", {}, ["age"]])
def test_bad_rule(tmp_path, rule):
    message = catalog_error(tmp_path, [segment("young", rule), segment("rest", "all")])
    assert "segment 'young'" in message and "'rule'" in message


def test_condition_must_be_a_mapping(tmp_path):
    message = catalog_error(tmp_path, [segment("young", {"age": 30}), segment("rest", "all")])
    assert "condition on 'age' must be a mapping" in message


@pytest.mark.parametrize("content", ["", "segments: []", "segments: {a: 1}", "- a\n- b"])
def test_catalog_without_segments(tmp_path, content):
    path = tmp_path / "segments.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match="non-empty 'segments' list"):
        load_catalog(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text("segments: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(path)
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "missing.yaml")


# --- first match wins, every operator ----------------------------------------------------------------

OPERATOR_CATALOG = [
    segment("s_eq", {"tier": {"==": "Gold"}, "x": {"==": 5}}),
    segment("s_lt", {"x": {"<": 3}}),
    segment("s_le", {"x": {"<=": 3}}),
    segment("s_between", {"x": {"between": [4, 6]}}),
    segment("s_in", {"tier": {"in": ["Silver"]}, "x": {">": 20}}),
    segment("s_not_in", {"tier": {"not_in": ["Gold", "Silver"]}, "x": {">=": 20}}),
    segment("s_ne", {"tier": {"!=": "Bronze"}, "x": {">=": 20}}),
    segment("rest", "all"),
]
# (tier, x) -> the segment whose rule matches first.
OPERATOR_CASES = [
    ("Gold", 5, "s_eq"),          # also matches s_between: the earlier rule wins
    ("Silver", 5, "s_between"),   # == needs both conditions
    ("Bronze", 2, "s_lt"),        # also matches s_le
    ("Gold", 3, "s_le"),          # 3 is not < 3 but is <= 3
    ("Silver", 4, "s_between"),   # between is inclusive at the low end
    ("Bronze", 6, "s_between"),   # ... and at the high end
    ("Bronze", 7, "rest"),
    ("Silver", 21, "s_in"),       # also matches s_ne
    ("Silver", 20, "s_ne"),       # > 20 fails, so not s_in; Silver is excluded by not_in
    ("Bronze", 20, "s_not_in"),   # >= 20 includes 20; != Bronze fails anyway
    ("Gold", 25, "s_ne"),
    ("Gold", 19, "rest"),
    ("Bronze", 25, "s_not_in"),
]


def test_first_match_wins_over_every_operator(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, OPERATOR_CATALOG))
    frame = pd.DataFrame([(t, x) for t, x, _ in OPERATOR_CASES], columns=["tier", "x"], index=range(100, 100 + len(OPERATOR_CASES)))
    labels = assign_segments(frame, catalog)
    assert list(labels.astype(str)) == [expected for _, _, expected in OPERATOR_CASES]
    assert labels.index.equals(frame.index)
    assert list(labels.cat.categories) == catalog.ids
    sizes = segment_sizes(labels, catalog)
    assert list(sizes) == catalog.ids and sum(sizes.values()) == len(frame)
    assert sizes["s_eq"] == 1 and sizes["s_between"] == 3


def test_missing_number_fails_comparisons_and_falls_to_catch_all(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, OPERATOR_CATALOG))
    frame = pd.DataFrame({"tier": ["Bronze", "Gold"], "x": [np.nan, 25.0]})
    assert list(assign_segments(frame, catalog).astype(str)) == ["rest", "s_ne"]


def test_rule_naming_an_unknown_column(tmp_path):
    path = write_catalog(tmp_path, [segment("spenders", {"lifetime_value": {">": 100}}), segment("rest", "all")])
    catalog = load_catalog(path)
    frame = pd.DataFrame({"age": [30]})
    with pytest.raises(ConfigError) as info:
        assign_segments(frame, catalog)
    message = str(info.value)
    assert str(path) in message and "'lifetime_value'" in message and "'spenders'" in message
    with pytest.raises(ConfigError):
        check_rules_against_customers(catalog, frame)
    check_rules_against_customers(catalog, frame.assign(lifetime_value=[250.0]))  # no error


@pytest.mark.parametrize(("rule", "column", "values", "message"), [
    ({"tier": {">": 5}}, "tier", ["gold"], "the column holds text, so '>' needs text (quote it); got 5"),
    ({"tier": {"==": 5}}, "tier", ["gold"], "the column holds text, so '==' needs text (quote it); got 5"),
    ({"age": {">": "four"}}, "age", [30], "the column holds numbers, so '>' needs a number; got 'four'"),
    ({"age": {"between": [18, "sixty"]}}, "age", [30], "got 'sixty'"),
    ({"tier": {"in": ["gold", 3]}}, "tier", ["gold"], "got 3"),
])
def test_a_rule_comparing_a_column_with_a_value_of_another_kind_is_named(tmp_path, rule, column, values, message):
    path = write_catalog(tmp_path, [segment("picky", rule), segment("rest", "all")])
    with pytest.raises(ConfigError) as info:
        assign_segments(pd.DataFrame({column: values}), load_catalog(path))
    assert str(path) in str(info.value) and f"segment 'picky' rule on column '{column}'" in str(info.value)
    assert message in str(info.value)


def test_every_committed_segment_is_non_empty_on_the_sample_customers():
    catalog = load_catalog(SEGMENTS_PATH)
    customers = load_customers(CUSTOMERS_CSV)
    sizes = segment_sizes(assign_segments(customers, catalog), catalog)
    assert sum(sizes.values()) == len(customers)
    empty = [segment_id for segment_id, size in sizes.items() if size == 0]
    assert not empty, f"segments with no customers: {empty} ({sizes})"


# --- vectorized == reference -------------------------------------------------------------------------

PYTHON_OPERATORS = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b, "between": lambda a, b: b[0] <= a <= b[1],
}


def reference_segments(customers: pd.DataFrame, catalog: SegmentCatalog) -> list[str]:
    """Row by row, rule by rule, in plain Python: the obvious reading of 'first match wins'."""
    labels = []
    for row in customers.to_dict("records"):
        for s in catalog.segments:
            if all(PYTHON_OPERATORS[c.operator](row[c.column], c.value) for c in s.conditions):
                labels.append(s.segment_id)
                break
    return labels


ALL_OPERATORS_CATALOG = [
    segment("gold_young", {"tier": {"==": "Gold"}, "age": {"<": 30}}),
    segment("lapsed", {"last_engagement_days": {">": 200}, "tier": {"!=": "Gold"}}),
    segment("metro", {"location": {"in": ["Seattle", "Toronto", "Chicago"]}, "purchase_frequency": {">=": 6}}),
    segment("mid_age", {"age": {"between": [35, 45]}, "avg_order_value": {"<=": 60.0}}),
    segment("small_town", {"location": {"not_in": ["Seattle", "Toronto", "Chicago", "Denver"]},
                           "historical_open_rate": {">": 0.3}}),
    segment("rest", "all"),
]


@pytest.fixture(scope="module")
def many_customers() -> pd.DataFrame:
    return generate_customers(200_000, seed=11)


def test_vectorized_matches_reference_on_committed_catalog(many_customers):
    catalog = load_catalog(SEGMENTS_PATH)
    labels = assign_segments(many_customers, catalog)
    assert len(labels) == len(many_customers) and labels.notna().all()
    sizes = segment_sizes(labels, catalog)
    assert all(size > 0 for size in sizes.values()), sizes
    sample = slice(100_000, 102_000)
    assert list(labels.iloc[sample].astype(str)) == reference_segments(many_customers.iloc[sample], catalog)


def test_vectorized_matches_reference_with_every_operator(tmp_path, many_customers):
    catalog = load_catalog(write_catalog(tmp_path, ALL_OPERATORS_CATALOG))
    labels = assign_segments(many_customers, catalog)
    sample = many_customers.iloc[:2000]
    expected = reference_segments(sample, catalog)
    assert list(labels.iloc[:2000].astype(str)) == expected
    assert set(expected) == set(catalog.ids)  # the slice exercises every rule


def test_segmentation_does_not_depend_on_row_order(many_customers):
    catalog = load_catalog(SEGMENTS_PATH)
    subset = many_customers.iloc[:5000]
    shuffled = subset.sample(frac=1.0, random_state=3)
    original = assign_segments(subset, catalog).astype(str)
    assert assign_segments(shuffled, catalog).astype(str).sort_index().equals(original)
