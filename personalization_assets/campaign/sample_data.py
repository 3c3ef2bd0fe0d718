"""Synthetic sample data for the embedded, offline campaign.

The orchestrator must run end to end without any customer data, so this module fabricates a
customer table that looks and behaves like a real retailer's CRM export: skewed spend, long-tailed
purchase counts, an at-risk tail of lapsed customers, and engagement that depends on value and
recency. Those correlations matter: the segment rules, the CUPED covariates and the engagement
simulator all read these columns, and with independent columns every segment would look alike and
the experiment would have nothing to find.

Everything is drawn from one seeded ``numpy.random.Generator`` with vectorized operations, so the
same seed always gives the same frame and a million rows take a few seconds.

The module is pure (no Dagster import); ``write_sample_data`` also copies the packaged content
corpus, segment catalog and campaign config next to the generated ``customers.csv`` so the result
is a complete, self-contained data folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.audience.customers import REQUIRED_COLUMNS
from personalization_assets.campaign.paths import PROJECT_ROOT

DEFAULT_SEED = 20260105

SAMPLE_DIR = Path(__file__).parent / "sample"
PROMPTS_DIR = PROJECT_ROOT / "prompts"


def _replace_line(text: str, pattern: str, replacement: str) -> str:
    """The first whole line matching `pattern` replaced (comments and layout kept, unlike a YAML round trip)."""
    new, count = re.subn(rf"^{pattern}$", lambda _: replacement, text, count=1, flags=re.MULTILINE)
    if not count:
        raise ValueError(f"the packaged campaign has no line matching {pattern!r}")
    return new

# The contract's columns, with the optional merge fields right after the id.
CUSTOMER_COLUMNS = [REQUIRED_COLUMNS[0], "first_name", "email", *REQUIRED_COLUMNS[1:]]

# ASCII-only so that the lowercase name can go straight into an email address.
FIRST_NAMES = np.array([
    "Ana", "Liam", "Priya", "Wei", "Kwame", "Sofia", "Mateo", "Aisha", "Noah", "Yuki",
    "Olivia", "Omar", "Chloe", "Diego", "Fatima", "Ethan", "Mei", "Lucas", "Zara", "Ravi",
    "Emma", "Tariq", "Hannah", "Jin", "Amara", "Gabriel", "Leila", "Samuel", "Ingrid", "Kofi",
    "Isabel", "Arjun", "Nadia", "Connor", "Ayesha", "Hiro", "Grace", "Malik", "Elena", "Tomas",
    "Lucia", "Darius", "Freya", "Andre", "Mira", "Kenji", "Rosa", "Felix", "Imani", "Oscar",
    "Soo-ah", "Ezra", "Niamh", "Rafael", "Thandi", "Marcus", "Anika", "Dmitri", "Keala", "Jonah",
])
# The same names as they appear in an email address: lowercase, letters only.
EMAIL_NAMES = np.char.replace(np.char.lower(FIRST_NAMES), "-", "")

# City -> relative weight; a few large metros dominate, as in a real customer file.
LOCATION_WEIGHTS = {
    "Seattle": 9.0, "Portland": 7.0, "Denver": 8.0, "Vancouver": 6.0, "Toronto": 7.5,
    "Boulder": 3.0, "Salt Lake City": 4.5, "Minneapolis": 4.0, "Chicago": 6.5, "Boston": 5.0,
    "Burlington": 2.0, "Asheville": 2.5, "Austin": 5.5, "Bend": 2.0, "Calgary": 4.0,
    "Montreal": 3.5, "Edinburgh": 3.0, "Manchester": 3.5, "Bristol": 2.5, "Anchorage": 1.5,
}
LOCATIONS = np.array(list(LOCATION_WEIGHTS), dtype=object)
LOCATION_PROBABILITIES = np.array(list(LOCATION_WEIGHTS.values())) / sum(LOCATION_WEIGHTS.values())

# What `generate-data --rollout` adds to the campaign file: effects that vary inside a segment, and
# a test on a share before the rollout. Appended at the end, inside `simulation:` (the last section).
ROLLOUT_EXAMPLE = """\
  # Effects that vary inside a segment (SIMULATED ground truth, multiplying the effects above):
  # young customers respond to the friendly tone and not the urgent one, older customers to the
  # informational one. A per-segment tone cannot follow this; a per-customer policy can.
  heterogeneity:
    - when: {column: age, below: 35}
      effects: {friendly: 1.45, urgent: 0.8}
    - when: {column: age, at_least: 55}
      effects: {informational: 1.5, friendly: 0.8}

# Test on a share, then roll out (docs/personalization.md): the randomized test is 20% of each
# segment; once its engagement is in, everyone else is sent each customer's predicted best message
# where that policy's gate passes (else each segment's winner), and 10% of them the control message
# so the rollout's own lift is measured.
rollout:
  test_share: 0.2
  policy: personalized
  holdout_share: 0.1
  # This sample's engagement is SIMULATED: let the rollout be decided on it (a real campaign's
  # rollout waits for the test's ESP export, which the engagement sensor picks up).
  from_simulated_engagement: true
"""

# Tier shares (Gold, Silver, Bronze) applied to a noisy value score.
TIER_SHARES = {"Gold": 0.15, "Silver": 0.35, "Bronze": 0.50}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _standardize(x: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance copy, so differently scaled signals can be mixed by weight."""
    spread = x.std()
    return (x - x.mean()) / spread if spread > 0 else x - x.mean()


def _id_digits(n: int) -> np.ndarray:
    """Zero-padded running numbers 1..n; the width grows past 7 digits only when n needs it."""
    width = max(7, len(str(n)))
    return np.char.zfill(np.arange(1, n + 1).astype(f"U{width}"), width)


def _tiers(value_score: np.ndarray) -> np.ndarray:
    """Cut a noisy value score at its quantiles so tier shares match TIER_SHARES.

    The score mixes spend and frequency with noise, so tiers overlap the way real loyalty tiers
    do (they are earned over years, not recomputed from this year's numbers).
    """
    gold_share = TIER_SHARES["Gold"]
    silver_or_better = gold_share + TIER_SHARES["Silver"]
    gold_cut, silver_cut = np.quantile(value_score, [1 - gold_share, 1 - silver_or_better])
    return np.where(value_score >= gold_cut, "Gold",
                    np.where(value_score >= silver_cut, "Silver", "Bronze"))


def generate_customers(n: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Return ``n`` synthetic customers with realistic, correlated attributes.

    One latent ``value`` factor (how much a customer is worth to the brand) drives spend,
    frequency, age and, through a partly independent ``affinity`` factor, engagement. Recency
    then pulls open rates down for lapsed customers. Columns follow ``CUSTOMER_COLUMNS``.

    The coefficients are tuned against the packaged segment catalog so that, with first match
    wins, every segment holds at least 6% of customers (about 7% for the smallest, VIP
    champions); a campaign with an empty segment would have nothing to test there.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)

    value = rng.standard_normal(n)
    affinity = 0.6 * value + 0.8 * rng.standard_normal(n)  # brand affinity, correlated with value

    age = np.clip(np.rint(41 + 3.0 * value + 13 * rng.standard_normal(n)), 18, 85).astype(np.int64)

    location = LOCATIONS[rng.choice(len(LOCATIONS), size=n, p=LOCATION_PROBABILITIES)]

    # Spend: log-normal around ~$65, higher for valuable customers, bounded to a plausible range.
    avg_order_value = np.round(
        np.clip(np.exp(np.log(65) + 0.45 * value + 0.45 * rng.standard_normal(n)), 15, 400), 2
    )

    # Purchases in 12 months: gamma-Poisson (negative binomial) for a long tail of heavy buyers,
    # capped at 60 (more than that is a reseller, not a shopper).
    purchase_rate = 3.0 * np.exp(0.7 * value + 0.25 * affinity) * rng.gamma(3.0, 1 / 3, n)
    purchase_frequency = np.minimum(rng.poisson(purchase_rate), 60).astype(np.int64)

    # Days since last engagement: exponential, much shorter for engaged customers; a lapsed tail
    # (capped at two years, past which a CRM usually suppresses the contact).
    recency_scale = 55 * np.exp(-0.55 * affinity)
    last_engagement_days = np.clip(
        np.rint(rng.exponential(recency_scale)), 0, 730
    ).astype(np.int64)

    # Opens depend on affinity and fall with recency; clicks are a share of opens.
    open_logit = (-1.25 + 0.45 * affinity + 0.2 * value
                  - 0.006 * (last_engagement_days - 60) + 0.35 * rng.standard_normal(n))
    historical_open_rate = np.round(_sigmoid(open_logit), 4)
    click_through = _sigmoid(-1.8 + 0.35 * affinity + 0.3 * rng.standard_normal(n))
    historical_click_rate = np.round(historical_open_rate * click_through, 4)

    value_score = (0.45 * _standardize(np.log(avg_order_value))
                   + 0.65 * _standardize(np.log1p(purchase_frequency))
                   + 0.5 * rng.standard_normal(n))
    tier = _tiers(value_score)

    # numpy string ufuncs keep the string columns vectorized (pandas .str maps in Python).
    digits = _id_digits(n)
    name_index = rng.integers(0, len(FIRST_NAMES), n)
    first_name = FIRST_NAMES[name_index]
    email_local = np.char.add(np.char.add(EMAIL_NAMES[name_index], ".c"), digits)

    return pd.DataFrame({
        "customer_id": np.char.add("C", digits).astype(object),
        "first_name": first_name.astype(object),
        "email": np.char.add(email_local, "@example.com").astype(object),
        "age": age,
        "location": location,
        "tier": tier.astype(object),
        "purchase_frequency": purchase_frequency,
        "avg_order_value": avg_order_value,
        "last_engagement_days": last_engagement_days,
        "historical_open_rate": historical_open_rate,
        "historical_click_rate": historical_click_rate,
    }, columns=CUSTOMER_COLUMNS)


SUPPRESSION_SHARE = 0.015
SUPPRESSION_REASONS = {"unsubscribed": 0.6, "bounced": 0.25, "complained": 0.15}


def generate_suppression(customers: pd.DataFrame, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """A SIMULATED suppression list: a seeded 1.5% of the customers, each listed by id or by
    address (as ESP exports list them), with a reason and the date it was recorded."""
    rng = np.random.default_rng([seed, 1])
    listed = np.sort(rng.choice(len(customers), size=int(round(len(customers) * SUPPRESSION_SHARE)), replace=False))
    by_id = rng.random(len(listed)) < 0.5
    ids = customers["customer_id"].to_numpy(dtype=object)[listed]
    emails = customers["email"].to_numpy(dtype=object)[listed]
    days = rng.integers(0, 365, size=len(listed))
    return pd.DataFrame({
        "customer_id": np.where(by_id, ids, ""),
        "email": np.where(by_id, "", emails),
        "reason": rng.choice(list(SUPPRESSION_REASONS), size=len(listed), p=list(SUPPRESSION_REASONS.values())),
        "date": (np.datetime64("2025-01-01") + days.astype("timedelta64[D]")).astype(str),
    })


def write_sample_data(
    out_dir: Path, n_customers: int = 20000, seed: int = DEFAULT_SEED, *, company: str | None = None, goal: str | None = None,
    copy_prompts: bool | None = None, rollout: bool = False,
) -> dict[str, Path]:
    """Write a complete sample data folder: customers, their (simulated) suppression list, content
    corpus, segments and campaign, and the prompts it needs.

    The content, segment catalog and campaign config are packaged with the code and copied as
    they are, so the folder can be edited freely without touching the package. `company` and
    `goal` replace the sample's company name and campaign goal in the written campaign file;
    `rollout` adds a test on a share, a rollout, and simulated effects that vary inside segments
    (ROLLOUT_EXAMPLE).

    The folder is self-contained: it runs from any working directory. A folder directly inside
    the project (such as the committed `data/`) uses the project's `prompts/` through
    `paths.prompts: ../prompts`; anywhere else the prompts are copied into `<out_dir>/prompts`
    (`copy_prompts` decides it explicitly).
    Returns the path of every file written, keyed by a short name (``customers``, ``segments``,
    ``campaign``, ``suppression``, ``content/<document id>``, ``prompts/<file>``).
    """
    out_dir = Path(out_dir)
    content_dir = out_dir / "content"
    content_dir.mkdir(parents=True, exist_ok=True)

    written: dict[str, Path] = {}
    customers_path = out_dir / "customers.csv"
    customers = generate_customers(n_customers, seed)
    customers.to_csv(customers_path, index=False)
    written["customers"] = customers_path
    written["suppression"] = out_dir / "suppression.csv"
    generate_suppression(customers, seed).to_csv(written["suppression"], index=False)

    written["segments"] = Path(shutil.copy2(SAMPLE_DIR / "segments.yaml", out_dir / "segments.yaml"))
    campaign_text = (SAMPLE_DIR / "campaign.yaml").read_text()
    if copy_prompts is None:
        copy_prompts = (out_dir.resolve().parent / "prompts") != PROMPTS_DIR.resolve()
    if copy_prompts:
        if not (PROMPTS_DIR / "system.md").is_file():
            raise FileNotFoundError(f"the project's prompts are not at {PROMPTS_DIR}: generate the folder from a source checkout")
        for source in sorted(p for p in PROMPTS_DIR.rglob("*") if p.is_file()):
            target = out_dir / "prompts" / source.relative_to(PROMPTS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            written[f"prompts/{source.relative_to(PROMPTS_DIR).as_posix()}"] = Path(shutil.copy2(source, target))
        campaign_text = _replace_line(campaign_text, r"  prompts: .*", "  prompts: prompts")
    if company is not None:
        campaign_text = _replace_line(campaign_text, r"  name: .*", f"  name: {json.dumps(company)}")
        campaign_text = _replace_line(campaign_text, r"  from_name: .*", f"  from_name: {json.dumps(company)}")
    if goal is not None:
        campaign_text, replaced = re.subn(r"^goal: >-\n(?:  .*\n)+", lambda _: f"goal: {json.dumps(goal)}\n", campaign_text, count=1,
                                          flags=re.MULTILINE)
        if not replaced:
            raise ValueError("the packaged campaign has no 'goal: >-' block to replace")
    if rollout:
        sections = re.findall(r"^([a-z_]+):", campaign_text, flags=re.MULTILINE)
        if sections[-1:] != ["simulation"]:
            raise ValueError(f"the packaged campaign must end with its simulation section to take the rollout example, not {sections[-1:]}")
        campaign_text = campaign_text.rstrip("\n") + "\n" + ROLLOUT_EXAMPLE
    written["campaign"] = out_dir / "campaign.yaml"
    written["campaign"].write_text(campaign_text)

    for document in sorted((SAMPLE_DIR / "content").glob("*.json")):
        written[f"content/{document.stem}"] = Path(
            shutil.copy2(document, content_dir / document.name)
        )
    return written
