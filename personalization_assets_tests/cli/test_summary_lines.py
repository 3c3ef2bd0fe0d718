"""`cpo run`'s summary lines from stored results rows."""

import numpy as np
import pandas as pd

from personalization_assets.cli.summary import allocation_line, incremental_line


def test_the_email_effect_line_says_what_is_not_measurable_instead_of_nan():
    results = pd.DataFrame({
        "scope": "vs_no_email", "metric": "conversion_rate", "arm": ["no_email", "control", "friendly"],
        "rel_lift": [np.nan, np.nan, 0.25], "rel_lift_ci_low": [np.nan, np.nan, 0.05], "rel_lift_ci_high": [np.nan, np.nan, 0.5],
        "unmeasurable_reason": ["", "no conversion_rate successes in no_email (0/180)", ""],
    })
    line = incremental_line(results)
    assert "nan" not in line
    assert "control conversion_rate not measurable (no conversion_rate successes in no_email (0/180))" in line
    assert "friendly conversion_rate +25.0% [+5.0%, +50.0%]" in line


def test_the_allocation_line_lists_the_adapted_segments_or_why_none_adapted():
    rows = pd.DataFrame({"segment": ["a", "a", "b", "b"], "arm": ["control", "friendly"] * 2, "allocation": "thompson",
                         "weight": [0.5, 0.5, 0.5, 0.5], "adapted": [True, True, False, False]})
    assert allocation_line(rows) == "allocation: thompson; adapted in 1 of 2 segments: a control 50%, friendly 50%"
    assert "every segment on the configured weights" in allocation_line(rows.assign(adapted=False))
