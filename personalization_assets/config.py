"""Campaign configuration: loading, validation and the locations the tool reads and writes.

`data/campaign.yaml` is the one file a user edits to run a campaign; every path inside it is
relative to its own folder so a campaign folder can be copied or generated anywhere.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from personalization_assets.errors import ConfigError

# The repository root when running from a checkout (the package sits directly below it).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTROL_ARM = "control"
METRIC_COLUMNS = {"open_rate": "opened", "click_rate": "clicked", "conversion_rate": "converted"}
# The historical rate that predicts each metric: CUPED covariates and the simulator's baseline.
METRIC_COVARIATES = {
    "open_rate": ["historical_open_rate"],
    "click_rate": ["historical_open_rate", "historical_click_rate"],
    "conversion_rate": ["historical_open_rate", "historical_click_rate"],
}


@dataclass(frozen=True)
class SafetySettings:
    pass_rate_threshold: float = 0.90
    block_severity: int = 4
    policy_version: str = "unversioned"
    blocklists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulationSettings:
    seed: int = 0
    conversion_given_click: float = 0.1
    default_effects: Mapping[str, float] = field(default_factory=dict)
    segment_effects: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def effect(self, segment: str, arm: str) -> float:
        """Ground-truth multiplicative effect of sending `arm`'s message to a customer of `segment`."""
        return float(self.segment_effects.get(segment, {}).get(arm, self.default_effects.get(arm, 1.0)))


@dataclass(frozen=True)
class CampaignConfig:
    path: Path
    campaign_id: str
    experiment_id: str
    company_name: str
    company_website: str
    goal: str
    first_wave: dt.date
    tones: tuple[str, ...]
    arm_weights: Mapping[str, float]
    primary_metric: str
    secondary_metrics: tuple[str, ...]
    alpha: float
    minimum_lift: float
    top_k: int
    max_concurrency: int
    body_min_chars: int
    body_max_chars: int
    safety: SafetySettings
    simulation: SimulationSettings
    customers_path: Path
    segments_path: Path
    content_dir: Path
    engagement_dir: Path
    prompts_dir: Path

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(self.arm_weights)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.primary_metric, *self.secondary_metrics)

    def engagement_file(self, wave: str) -> Path:
        return self.engagement_dir / f"{wave}.csv"


def _require(raw: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise ConfigError(path, f"missing required key '{key}'")
    return raw[key]


def _fraction(value: Any, key: str, path: Path, *, low: float = 0.0, high: float = 1.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(path, f"'{key}' must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(path, f"'{key}' must be within [{low}, {high}], got {number}")
    return number


def _parse_arms(raw: Mapping[str, Any], tones: tuple[str, ...], path: Path) -> dict[str, float]:
    arms_raw = raw.get("arms") or {CONTROL_ARM: 1.0, **{tone: 1.0 for tone in tones}}
    if not isinstance(arms_raw, Mapping):
        raise ConfigError(path, "'arms' must map arm name -> allocation weight")
    weights = {str(arm): _fraction(w, f"arms.{arm}", path, high=1e9) for arm, w in arms_raw.items()}
    if CONTROL_ARM not in weights:
        raise ConfigError(path, f"'arms' must include the '{CONTROL_ARM}' arm")
    unknown = sorted(set(weights) - {CONTROL_ARM, *tones})
    if unknown:
        raise ConfigError(path, f"arms {unknown} are neither '{CONTROL_ARM}' nor a configured tone {list(tones)}")
    total = sum(weights.values())
    if total <= 0 or weights[CONTROL_ARM] <= 0:
        raise ConfigError(path, "arm weights must be positive, control included")
    # Control first, then tones in configured order: the order every table and report uses.
    ordered = [CONTROL_ARM, *[t for t in tones if t in weights]]
    return {arm: weights[arm] / total for arm in ordered}


def _parse_metrics(raw: Mapping[str, Any], path: Path) -> tuple[str, tuple[str, ...]]:
    metrics = raw.get("metrics") or {}
    primary = str(metrics.get("primary", "open_rate"))
    secondary = tuple(str(m) for m in metrics.get("secondary", ["click_rate", "conversion_rate"]))
    for metric in (primary, *secondary):
        if metric not in METRIC_COLUMNS:
            raise ConfigError(path, f"unknown metric '{metric}'; known metrics: {sorted(METRIC_COLUMNS)}")
    return primary, tuple(m for m in secondary if m != primary)


def _parse_simulation(raw: Mapping[str, Any], path: Path) -> SimulationSettings:
    sim = raw.get("simulation") or {}
    effects = sim.get("effects") or {}
    segment_effects = {
        str(seg): {str(arm): _fraction(v, f"simulation.effects.segments.{seg}.{arm}", path, high=10) for arm, v in arms.items()}
        for seg, arms in (effects.get("segments") or {}).items()
    }
    default_effects = {
        str(arm): _fraction(v, f"simulation.effects.default.{arm}", path, high=10)
        for arm, v in (effects.get("default") or {}).items()
    }
    return SimulationSettings(
        seed=int(sim.get("seed", 0)),
        conversion_given_click=_fraction(sim.get("conversion_given_click", 0.1), "simulation.conversion_given_click", path),
        default_effects=default_effects,
        segment_effects=segment_effects,
    )


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and validate a campaign file; every problem is reported with the file and the key."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(path, "campaign file not found (set --campaign or CPO_CAMPAIGN)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(path, "the campaign file must be a YAML mapping")

    base = path.parent
    paths = raw.get("paths") or {}
    tones = tuple(str(t) for t in (raw.get("tones") or ["urgent", "informational", "friendly"]))
    if len(set(tones)) != len(tones) or CONTROL_ARM in tones:
        raise ConfigError(path, f"'tones' must be distinct and must not include '{CONTROL_ARM}'")
    primary, secondary = _parse_metrics(raw, path)
    safety_raw = raw.get("safety") or {}
    block_severity = int(safety_raw.get("block_severity", 4))
    if block_severity not in (2, 4, 6):
        raise ConfigError(path, "'safety.block_severity' must be 2, 4 or 6 (Azure severity levels)")
    company = raw.get("company") or {}
    try:
        first_wave = dt.date.fromisoformat(str(raw.get("first_wave", "2026-01-05")))
    except ValueError:
        raise ConfigError(path, f"'first_wave' must be an ISO date, got {raw.get('first_wave')!r}") from None
    if first_wave.weekday() != 0:
        raise ConfigError(path, f"'first_wave' must be a Monday (waves run Monday to Sunday), got {first_wave}")
    generation = raw.get("generation") or {}
    campaign_id = str(_require(raw, "campaign_id", path))

    return CampaignConfig(
        path=path,
        campaign_id=campaign_id,
        experiment_id=str(raw.get("experiment_id") or campaign_id),
        company_name=str(company.get("name", "Our company")),
        company_website=str(company.get("website", "")),
        goal=" ".join(str(_require(raw, "goal", path)).split()),
        first_wave=first_wave,
        tones=tones,
        arm_weights=_parse_arms(raw, tones, path),
        primary_metric=primary,
        secondary_metrics=secondary,
        alpha=_fraction(raw.get("alpha", 0.05), "alpha", path, low=1e-6, high=0.5),
        minimum_lift=_fraction(raw.get("minimum_lift", 0.10), "minimum_lift", path, low=0.0, high=10.0),
        top_k=int((raw.get("retrieval") or {}).get("top_k", 3)),
        max_concurrency=int(generation.get("max_concurrency", 4)),
        body_min_chars=int(generation.get("body_min_chars", 200)),
        body_max_chars=int(generation.get("body_max_chars", 1500)),
        safety=SafetySettings(
            pass_rate_threshold=_fraction(safety_raw.get("pass_rate_threshold", 0.9), "safety.pass_rate_threshold", path),
            block_severity=block_severity,
            policy_version=str(safety_raw.get("policy_version", "unversioned")),
            blocklists={str(k): tuple(str(t) for t in v or ()) for k, v in (safety_raw.get("blocklists") or {}).items()},
        ),
        simulation=_parse_simulation(raw, path),
        customers_path=(base / paths.get("customers", "customers.csv")).resolve(),
        segments_path=(base / paths.get("segments", "segments.yaml")).resolve(),
        content_dir=(base / paths.get("content", "content")).resolve(),
        engagement_dir=(base / paths.get("engagement", "engagement")).resolve(),
        prompts_dir=(base / paths.get("prompts", "../prompts")).resolve(),
    )


def default_campaign_path() -> Path:
    """`CPO_CAMPAIGN` if set, else `data/campaign.yaml` in the working directory, else the checkout's."""
    if os.environ.get("CPO_CAMPAIGN"):
        return Path(os.environ["CPO_CAMPAIGN"]).expanduser()
    local = Path.cwd() / "data" / "campaign.yaml"
    return local if local.is_file() else PROJECT_ROOT / "data" / "campaign.yaml"


def cpo_home() -> Path:
    """Where the warehouse, reports and Dagster instance live: `CPO_HOME`, default `.cpo/` here."""
    return Path(os.environ.get("CPO_HOME") or Path.cwd() / ".cpo").expanduser().resolve()


def warehouse_path(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "warehouse.duckdb"


def reports_dir(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "reports"


def exports_dir(home: Path | None = None) -> Path:
    """Files for other systems, one folder per wave (e.g. the rendered emails for the ESP)."""
    return (home or cpo_home()) / "exports"


def dagster_home(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "dagster"


def audit_dir(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "audit"
