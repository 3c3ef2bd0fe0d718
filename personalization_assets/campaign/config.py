"""The campaign file (`data/campaign.yaml`), as typed, validated settings.

`campaign.yaml` is the one file a user edits to run a campaign. It is read into `CampaignConfig`
(pydantic): unknown keys and duplicate keys are errors, every value is checked for type and range,
and rules that span keys (body bounds, arms against tones, weights) are checked together. Every
path inside it is relative to its own folder, so a campaign folder can be copied or generated
anywhere. Settings travel as their section (`config.generation`, `config.safety`, ...), never as
loose parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from personalization_assets.campaign.files import StrictModel, read_yaml, validate

CONTROL_ARM = "control"
# An optional arm that is sent nothing: the email's incremental effect is measured against it.
NO_EMAIL_ARM = "no_email"
REVENUE_METRIC = "revenue_per_recipient"
METRIC_COLUMNS = {"open_rate": "opened", "click_rate": "clicked", "conversion_rate": "converted", REVENUE_METRIC: "revenue"}
# Metrics that are amounts, not 0/1 outcomes: compared by their means (`stats/means.py`).
CONTINUOUS_METRICS = (REVENUE_METRIC,)
# The pre-experiment columns that predict each metric: CUPED covariates (past spend is the
# customer's purchase frequency times their average order value, `audience/customers.past_spend`).
METRIC_COVARIATES = {
    "open_rate": ["historical_open_rate"],
    "click_rate": ["historical_open_rate", "historical_click_rate"],
    "conversion_rate": ["historical_open_rate", "historical_click_rate"],
    REVENUE_METRIC: ["past_spend", "historical_click_rate"],
}


def binary_outcome(metric: str) -> str:
    """The 0/1 column that stands for `metric` where a 0/1 outcome is needed (the logistic response
    model): the metric's own, or `converted` (a purchase) for revenue per recipient."""
    return "converted" if metric in CONTINUOUS_METRICS else METRIC_COLUMNS[metric]


DEFAULT_TONES = ("urgent", "informational", "friendly")
# Guardrail metrics: rates a tone must not raise (optional columns of the ESP export; simulated too).
GUARDRAIL_COLUMNS = {"unsubscribe_rate": "unsubscribed", "complaint_rate": "complained"}

Metric = Literal["open_rate", "click_rate", "conversion_rate", "revenue_per_recipient"]
NonBlank = Annotated[str, Field(min_length=1, pattern=r"\S")]
# A tone names its prompt file (prompts/tones/<tone>.md) and its variants (segment:tone).
ToneName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")]
# Numbers are YAML numbers: "0.05" (a quoted string) is as much a mistake as "three".
Number = StrictFloat
Effect = Annotated[StrictFloat, Field(ge=0, le=10)]
# One address, no display name, no whitespace or header separators: what an SMTP MAIL FROM or
# RCPT TO takes (`audience/eligibility.py` checks every customer's address with it too).
EMAIL_ADDRESS_PATTERN = (r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
EmailAddress = Annotated[str, Field(max_length=254, pattern=EMAIL_ADDRESS_PATTERN)]
# One line of text for a header or a footer: no line break can start another header.
OneLine = Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\r\n\x00-\x1f\x7f\u2028\u2029\x85]*\S[^\r\n\x00-\x1f\x7f\u2028\u2029\x85]*$")]


class CompanySettings(StrictModel):
    name: NonBlank = "Our company"


class SenderSettings(StrictModel):
    """Who every email is from, as the law (CAN-SPAM, ePrivacy) and the large mailbox providers
    require it in the message itself (`delivery/compliance.py` refuses a campaign without them)."""

    from_name: Annotated[OneLine, Field(max_length=100)] = Field(description="the sender's name in the From header and the footer")
    from_address: EmailAddress = Field(description="the From address, also the envelope sender that bounces return to")
    reply_to: EmailAddress = Field(description="where replies go (Reply-To)")
    postal_address: OneLine = Field(description="the sender's valid physical postal address, shown in every footer")
    unsubscribe_url: Annotated[str, Field(max_length=500, pattern=r"^https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~!$'()*+,;=:@%/-]*)?$")] = Field(
        description="https endpoint taking the one-click unsubscribe POST (RFC 8058); each customer's signed token is appended")
    unsubscribe_mailto: EmailAddress = Field(description="address of the mailto: unsubscribe in List-Unsubscribe")
    message_id_domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")] | None = Field(
        None, description="right-hand side of each Message-ID; default: the From address's domain")

    @property
    def message_domain(self) -> str:
        return self.message_id_domain or self.from_address.rsplit("@", 1)[1]


class FrequencyCap(StrictModel):
    """At most `max_emails` campaign emails per customer in any `days` days, over every campaign
    that shares this CPO_HOME (`delivery/ledger.py` counts what was delivered)."""

    max_emails: StrictInt = Field(ge=1, le=1000)
    days: StrictInt = Field(7, ge=1, le=366)


class DeliverySettings(StrictModel):
    """How `cpo send` delivers a wave (`delivery/send.py`)."""

    frequency_cap: FrequencyCap | None = Field(None, description="customers over it are held out (hold_reason frequency_cap)")
    rate_per_second: Number = Field(20.0, gt=0, le=100_000, description="most messages handed to the mail server per second")
    max_concurrency: StrictInt = Field(4, ge=1, le=64, description="SMTP connections at once")
    max_attempts: StrictInt = Field(8, ge=1, le=100, description="server replies per message that did not deliver it (4xx, or a 5xx "
                                    "that is not the recipient's), over every send, before it is failed")
    retry_backoff_seconds: Number = Field(2.0, ge=0, le=3600, description="wait before the first retry; it doubles each attempt")
    retry_max_backoff_seconds: Number = Field(300.0, ge=0, le=3600, description="longest wait between two attempts")
    retry_budget_seconds: Number = Field(600.0, gt=0, description="how long one send keeps retrying deferred messages")
    timeout_seconds: Number = Field(60.0, gt=0, le=3600, description="SMTP socket timeout")
    data_timeout_seconds: Number = Field(600.0, gt=0, le=3600, description="wait for the reply to a message's data (RFC 5321: 10 minutes)")


class MetricSettings(StrictModel):
    primary: Metric = "open_rate"
    secondary: tuple[Metric, ...] = ("click_rate", "conversion_rate")

    @field_validator("secondary")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"metrics are listed more than once: {list(value)}")
        return value

    @property
    def all(self) -> tuple[str, ...]:
        """The primary metric first, then each secondary one that is not the primary."""
        return (self.primary, *(m for m in self.secondary if m != self.primary))


class RetrievalSettings(StrictModel):
    top_k: StrictInt = Field(3, ge=1, le=50, description="documents retrieved per segment and purpose")


BODY_MIN_CHARS, BODY_MAX_CHARS = 200, 1500


class BodyLength(StrictModel):
    """The length bounds of an email body, in characters: asked of every generator, checked on every variant."""

    min_chars: StrictInt = Field(BODY_MIN_CHARS, ge=1)
    max_chars: StrictInt = Field(BODY_MAX_CHARS, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> BodyLength:
        if self.min_chars >= self.max_chars:
            raise ValueError(f"body_min_chars ({self.min_chars}) must be less than body_max_chars ({self.max_chars})")
        return self

    def admits(self, body: str) -> bool:
        return self.min_chars <= len(body) <= self.max_chars


class GenerationSettings(StrictModel):
    """How variants are generated, and the length bounds every variant is validated against."""

    max_concurrency: StrictInt = Field(4, ge=1, le=256)
    body_min_chars: StrictInt = Field(BODY_MIN_CHARS, ge=1)
    body_max_chars: StrictInt = Field(BODY_MAX_CHARS, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> GenerationSettings:
        self.body_length  # BodyLength checks the bounds' order  # noqa: B018
        return self

    @property
    def body_length(self) -> BodyLength:
        return BodyLength(min_chars=self.body_min_chars, max_chars=self.body_max_chars)


class SafetySettings(StrictModel):
    pass_rate_threshold: Number = Field(0.90, ge=0, le=1)
    block_severity: Literal[2, 4, 6] = Field(4, description="Azure severity levels: 2 low, 4 medium, 6 high")
    policy_version: NonBlank = "unversioned"
    blocklists: dict[NonBlank, tuple[NonBlank, ...]] = Field(default_factory=dict)

    @field_validator("blocklists", mode="before")
    @classmethod
    def _empty_lists(cls, value: object) -> object:
        # `banned_claims:` with nothing under it is an empty list, as it always was.
        if isinstance(value, Mapping):
            return {name: [] if terms is None else terms for name, terms in value.items()}
        return value


class ApprovalSettings(StrictModel):
    """Who approves a message before it can be sent (`safety/approval.py`)."""

    mode: Literal["screen", "reviewer"] = Field(
        "screen", description="screen: what the automated screen approves; reviewer: a person approves each exact text too"
    )


class AudienceSettings(StrictModel):
    """Who may be emailed, beyond the suppression file (`audience/eligibility.py`)."""

    consent_column: NonBlank | None = Field(
        None, description="a customer column recording consent to email (yes/no); customers without it are held out"
    )
    merge_value_max_chars: StrictInt = Field(100, ge=1, le=10_000, description="longer merge values hold the customer out")


class EngagementSettings(StrictModel):
    """What an imported engagement export must cover (`experiment/engagement.py`)."""

    conversions: Literal["email_clicks", "any_channel"] = Field(
        "email_clicks",
        description="what `converted` counts: a conversion through the email's link (it needs a click), or a conversion by any "
                    "channel in the wave's week (needed with a no-email holdout, whose customers convert without an email)",
    )
    lists: Literal["every_sent_customer", "customers_with_events"] = Field(
        "every_sent_customer",
        description="what the ESP export lists: one row per sent customer (lost rows are then detected per arm), or only "
                    "customers with an open, click or conversion (nothing can then tell a lost row from no engagement)",
    )
    min_coverage: Number = Field(
        0.5, ge=0, le=1,
        description="an export listing fewer than this share of the wave's sent customers is refused (0 accepts any non-empty "
                    "file); not applied when the export lists only customers with events",
    )


class GuardrailSettings(StrictModel):
    """Non-inferiority margins of the guardrail metrics (`experiment/gates.guardrail_verdict`): a
    tone that significantly raises a guardrail's rate over control's, by a rise not shown below
    the margin (absolute, 0.003 = 0.3 points), cannot win and no policy sends it. `null` turns a
    guardrail off."""

    unsubscribe_rate: Number | None = Field(0.003, ge=0, le=1, description="largest acceptable rise of the unsubscribe rate")
    complaint_rate: Number | None = Field(0.001, ge=0, le=1, description="largest acceptable rise of the spam-complaint rate")

    @property
    def margins(self) -> dict[str, float]:
        return {metric: float(margin) for metric in GUARDRAIL_COLUMNS if (margin := getattr(self, metric)) is not None}


class SimulationEffects(StrictModel):
    default: dict[str, Effect] = Field(default_factory=dict)
    segments: dict[str, dict[str, Effect]] = Field(default_factory=dict)


class CustomerCondition(StrictModel):
    """Which customers a heterogeneous effect applies to: one customer column against one bound."""

    column: Literal["age", "purchase_frequency", "avg_order_value", "last_engagement_days", "historical_open_rate",
                    "historical_click_rate", "tier"]
    below: Number | None = None
    at_least: Number | None = None
    equals: NonBlank | None = None

    @model_validator(mode="after")
    def _one_test(self) -> CustomerCondition:
        given = [name for name in ("below", "at_least", "equals") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of below, at_least, equals (got {given or 'none'})")
        if (self.column == "tier") != (self.equals is not None):
            raise ValueError("tier is compared with equals; the numeric columns with below or at_least")
        return self


class HeterogeneousEffect(StrictModel):
    """A ground-truth effect that varies inside a segment: customers matching `when` (and, if
    given, in `segment`) have their arm effects multiplied by `effects`."""

    when: CustomerCondition
    segment: NonBlank | None = None
    effects: dict[str, Effect]


class SimulationSettings(StrictModel):
    """Ground truth of the engagement simulator, used only when a wave has no engagement file."""

    seed: StrictInt = 0
    conversion_given_click: Number = Field(0.1, ge=0, le=1)
    organic_conversion_rate: Number = Field(
        0.0, ge=0, le=1, description="chance a customer converts by another channel in the week, emailed or not (any_channel conversions)"
    )
    effects: SimulationEffects = Field(default_factory=SimulationEffects)
    heterogeneity: tuple[HeterogeneousEffect, ...] = Field(
        (), description="effects that vary with customer columns inside a segment: what a per-customer policy can find"
    )
    unsubscribe_rate: Number = Field(0.002, ge=0, le=1, description="chance a sent customer unsubscribes (control message)")
    complaint_rate: Number = Field(0.0003, ge=0, le=1, description="chance a sent customer marks the email as spam (control message)")
    guardrail_effects: dict[str, Effect] = Field(
        default_factory=dict, description="per arm, a multiplier of both rates above (1.5: half as many again unsubscribe)"
    )
    order_value_spread: Number = Field(
        0.6, ge=0, le=3, description="a simulated order's revenue is the customer's avg_order_value times a lognormal draw of "
                                     "mean 1 and this log-scale spread (0: exactly avg_order_value)"
    )

    def effect(self, segment: str, arm: str) -> float:
        """Ground-truth multiplicative effect of sending `arm`'s message to a customer of `segment`."""
        return float(self.effects.segments.get(segment, {}).get(arm, self.effects.default.get(arm, 1.0)))


class RolloutSettings(StrictModel):
    """Test on a share, then roll out (`experiment/rollout.py`): the randomized test is
    `test_share` of each segment; once its engagement is in, the rest is sent by `policy`, except a
    randomized `holdout_share` of it kept on the control message so the rollout's lift is measured."""

    test_share: Number = Field(gt=0, lt=1, description="share of each segment in the randomized test (0.2 = 20%)")
    policy: Literal["winner", "personalized"] = Field(
        "winner", description="winner: each segment's gated winning tone, else control; personalized: each customer's "
                              "predicted best message where the personalized policy's gate passes, else winner"
    )
    holdout_share: Number = Field(0.1, gt=0, lt=1, description="share of the rollout kept on the control message")
    from_simulated_engagement: bool = Field(
        False, description="decide the rollout on SIMULATED test engagement (a demonstration); a real campaign's rollout waits "
                           "for the test's ESP export"
    )


class ThompsonSettings(StrictModel):
    """Adaptive allocation across waves (`experiment/allocation.py`): each wave's tone weights per
    segment from the posterior of the primary metric given the earlier waves' results; the control
    (and a no-email holdout) keep their configured shares."""

    floor: Number = Field(0.05, ge=0, lt=1, description="smallest share of the audience each tone keeps (0.05 = 5%)")
    min_exposures: StrictInt = Field(
        100, ge=1, le=10_000_000, description="a segment's weights adapt only once each of its tones has this many earlier customers"
    )
    from_simulated_engagement: bool = Field(
        False, description="adapt on SIMULATED earlier waves' engagement (a demonstration); a real campaign adapts only on "
                           "imported ESP exports"
    )


class PersonalizationSettings(StrictModel):
    """The per-customer policy (`experiment/uplift.py`) and its honest value (`experiment/policies.py`)."""

    estimator: Literal["gradient_boosting", "logistic"] = Field(
        "gradient_boosting", description="the T-learner's per-arm outcome model (scikit-learn)"
    )
    evaluation_share: Number = Field(
        0.5, ge=0.1, le=0.9, description="share of the test the policies' values are estimated on; the policies are learned on the rest"
    )
    folds: StrictInt = Field(5, ge=2, le=20, description="cross-fitting folds of the outcome models on the evaluation part")
    seed: StrictInt = 0


class PathSettings(StrictModel):
    """Input locations, relative to the campaign file's folder; resolved to absolute paths."""

    model_config = StrictModel.model_config | {"validate_default": True}

    customers: Path = Path("customers.csv")
    segments: Path = Path("segments.yaml")
    content: Path = Path("content")
    engagement: Path = Path("engagement")
    prompts: Path = Path("../prompts")
    suppression: Path | None = Field(None, description="CSV of customer_id and/or email, reason, date: never emailed")
    email_templates: Path | None = Field(
        None, description="folder of message.html.j2 and message.txt.j2, the email's layout; default: <prompts>/email")

    @field_validator("*", mode="after")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base")
        return (Path(base) / value).resolve() if base is not None else value.resolve()

    def engagement_file(self, wave: str) -> Path:
        return self.engagement / f"{wave}.csv"

    @property
    def email_templates_dir(self) -> Path:
        return self.email_templates or self.prompts / "email"

    def rollout_engagement_file(self, wave: str) -> Path:
        """The ESP export of a wave's rollout send (after a test on a share), beside the test's."""
        return self.engagement / "rollout" / f"{wave}.csv"


class CampaignConfig(StrictModel):
    campaign_id: NonBlank
    experiment_id: NonBlank = Field(description="salt of the assignment hash; default: campaign_id")
    goal: NonBlank
    company: CompanySettings = Field(default_factory=CompanySettings)
    first_wave: dt.date = dt.date(2026, 1, 5)
    tones: tuple[ToneName, ...] = Field(DEFAULT_TONES, min_length=1)
    arms: dict[str, Annotated[StrictFloat, Field(ge=0, le=1e9)]] | None = Field(
        None, description="allocation weights by arm (control and tones); default: equal weights"
    )
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    alpha: Number = Field(0.05, ge=1e-6, le=0.5)
    minimum_lift: Number = Field(0.10, ge=0, le=10)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    audience: AudienceSettings = Field(default_factory=AudienceSettings)
    engagement: EngagementSettings = Field(default_factory=EngagementSettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    rollout: RolloutSettings | None = Field(None, description="test on a share, then roll out; default: the whole audience is the test")
    allocation: Literal["fixed", "thompson"] = Field(
        "fixed", description="fixed: the arms' weights every wave; thompson: each wave's tone weights per segment adapt to the "
                             "earlier waves' results (Thompson sampling, `thompson:`)"
    )
    thompson: ThompsonSettings = Field(default_factory=ThompsonSettings)
    personalization: PersonalizationSettings = Field(default_factory=PersonalizationSettings)
    sender: SenderSettings | None = Field(None, description="who the emails are from; required to build and send them")
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)
    paths: PathSettings = Field(default_factory=PathSettings)

    _path: Path = PrivateAttr(default=Path("campaign.yaml"))

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, raw: object) -> object:
        if not isinstance(raw, Mapping):
            return raw
        raw = dict(raw)
        # Ids are text; a number (`campaign_id: 2026`) reads as its digits, as it always did.
        for key in ("campaign_id", "experiment_id"):
            if isinstance(raw.get(key), int) and not isinstance(raw.get(key), bool):
                raw[key] = str(raw[key])
        if raw.get("experiment_id") in (None, "") and "campaign_id" in raw:
            raw["experiment_id"] = raw["campaign_id"]
        # An empty `paths:` or `arms:` means the defaults; paths are still resolved from the file's folder.
        if raw.get("paths") is None:
            raw["paths"] = {}
        if raw.get("arms") in ({}, None):
            raw["arms"] = None
        return raw

    @field_validator("goal")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())

    @field_validator("first_wave", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be an ISO date, YYYY-MM-DD") from None
        return value

    @field_validator("first_wave")
    @classmethod
    def _monday(cls, value: dt.date) -> dt.date:
        if value.weekday() != 0:
            raise ValueError(f"must be a Monday (waves run Monday to Sunday); {value} is a {value:%A}")
        return value

    @field_validator("tones")
    @classmethod
    def _distinct_tones(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"tones must be distinct, got {list(value)}")
        if CONTROL_ARM in value:
            raise ValueError(f"'{CONTROL_ARM}' is the control arm, not a tone")
        return value

    @field_validator("arms")
    @classmethod
    def _arms_match_tones(cls, arms: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        tones = info.data.get("tones")
        if arms is None or tones is None:  # no arms (equal weights), or the tones are wrong themselves
            return arms
        unknown = sorted(set(arms) - {CONTROL_ARM, NO_EMAIL_ARM, *tones})
        if unknown:
            raise ValueError(f"arms {unknown} are neither '{CONTROL_ARM}', '{NO_EMAIL_ARM}' nor a configured tone {list(tones)}")
        if arms.get(CONTROL_ARM, 0) <= 0:
            raise ValueError(f"must give the '{CONTROL_ARM}' arm a positive weight")
        if not any(arms.get(tone, 0) > 0 for tone in tones):
            raise ValueError("must give at least one tone a positive weight")
        return arms

    @model_validator(mode="after")
    def _no_email_needs_any_channel_conversions(self) -> CampaignConfig:
        if self.no_email_share > 0 and self.engagement.conversions != "any_channel":
            raise ValueError(f"arms.{NO_EMAIL_ARM}: a no-email holdout is measured on conversions by any channel (its customers get "
                             "no email to click); set engagement.conversions: any_channel")
        if self.simulation.organic_conversion_rate > 0 and self.engagement.conversions != "any_channel":
            raise ValueError("simulation.organic_conversion_rate: conversions without a click are conversions by any channel; "
                             "set engagement.conversions: any_channel")
        return self

    @model_validator(mode="after")
    def _thompson_allocation(self) -> CampaignConfig:
        if self.allocation != "thompson":
            return self
        if self.rollout is not None:
            raise ValueError("allocation: thompson adapts the weights wave by wave; rollout: tests once and sends the rest the "
                             "winner. Use one or the other (remove `rollout:` or set allocation: fixed)")
        tones = [arm for arm in self.arm_names if arm != CONTROL_ARM]
        unweighted = [tone for tone in tones if self.assignment_weights[tone] <= 0]
        if unweighted:
            raise ValueError(f"allocation: thompson adapts the weights of the tones in the test; tones {unweighted} have weight 0 "
                             "in `arms` (remove them from `tones` or give them a weight)")
        share = sum(self.assignment_weights[arm] for arm in tones)
        if self.thompson.floor * len(tones) > share + 1e-12:
            raise ValueError(f"thompson.floor: {self.thompson.floor:g} for each of {len(tones)} tones exceeds the tones' "
                             f"{share:.0%} share of the audience")
        return self

    @model_validator(mode="after")
    def _heterogeneity_arms(self) -> CampaignConfig:
        known = {CONTROL_ARM, *self.tones}
        unknown = sorted(set(self.simulation.guardrail_effects) - known)
        if unknown:
            raise ValueError(f"simulation.guardrail_effects: arms {unknown} are neither '{CONTROL_ARM}' nor a configured tone {list(self.tones)}")
        for position, rule in enumerate(self.simulation.heterogeneity):
            unknown = sorted(set(rule.effects) - known)
            if unknown:
                raise ValueError(f"simulation.heterogeneity[{position}].effects: arms {unknown} are neither "
                                 f"'{CONTROL_ARM}' nor a configured tone {list(self.tones)}")
        return self

    @property
    def path(self) -> Path:
        """The campaign file this configuration was read from."""
        return self._path

    @property
    def arm_weights(self) -> Mapping[str, float]:
        """The message arms' weights among the customers who are emailed, normalized, control first,
        then tones in configured order: the order every table and report uses. A tone left out of
        `arms` is not part of the experiment."""
        weights = self.assignment_weights
        total = sum(w for arm, w in weights.items() if arm != NO_EMAIL_ARM)
        return {arm: w / total for arm, w in weights.items() if arm != NO_EMAIL_ARM}

    @property
    def assignment_weights(self) -> Mapping[str, float]:
        """Every assigned arm's share of the audience: the message arms, then the no-email holdout
        when `arms` gives it a weight (its customers are sent nothing)."""
        raw = self.arms or {CONTROL_ARM: 1.0, **dict.fromkeys(self.tones, 1.0)}
        ordered = [arm for arm in (CONTROL_ARM, *self.tones) if arm in raw] + ([NO_EMAIL_ARM] if raw.get(NO_EMAIL_ARM, 0) > 0 else [])
        total = sum(raw[arm] for arm in ordered)
        return {arm: raw[arm] / total for arm in ordered}

    @property
    def no_email_share(self) -> float:
        return float(self.assignment_weights.get(NO_EMAIL_ARM, 0.0))

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(self.arm_weights)


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and validate a campaign file; every problem is reported with the file and the key."""
    path = Path(path).resolve()
    raw = read_yaml(path, missing="campaign file not found (set --campaign or CPO_CAMPAIGN)")
    config = validate(CampaignConfig, raw, path, context={"base": path.parent})
    config._path = path
    return config
