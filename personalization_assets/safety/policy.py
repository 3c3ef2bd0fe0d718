"""The safety policy and its one decision: approve only a fully screened, clean variant.

Severities follow Azure AI Content Safety: four categories on the 0/2/4/6 scale. The embedded and
the Azure backends both end in `decide`, so both block on exactly the same policy.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from personalization_assets.campaign.config import SafetySettings

CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
SAFE, LOW, MEDIUM, HIGH = 0, 2, 4, 6
SEVERITY_LEVELS = (SAFE, LOW, MEDIUM, HIGH)
# Azure's EightSeverityLevels output uses 0..7; anything else is not a severity.
_MAX_SEVERITY = 7


@dataclass(frozen=True, kw_only=True)
class SafetyPolicy:
    block_severity: int = MEDIUM  # Azure's own default filter level
    blocklists: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    policy_version: str

    def __post_init__(self) -> None:
        if not 1 <= self.block_severity <= _MAX_SEVERITY:
            raise ValueError(f"block_severity must be between 1 and {_MAX_SEVERITY}, got {self.block_severity}")
        frozen: dict[str, tuple[str, ...]] = {}
        for list_name, terms in self.blocklists.items():
            # A bare string would be read as a list of letters; a blank term would match everywhere.
            if isinstance(terms, str) or any(not str(term).strip() for term in terms):
                raise ValueError(f"blocklist {list_name!r} must be a list of non-blank terms, got {terms!r}")
            frozen[str(list_name)] = tuple(str(term) for term in terms)
        object.__setattr__(self, "blocklists", MappingProxyType(frozen))

    @classmethod
    def from_settings(cls, settings: SafetySettings) -> SafetyPolicy:
        """The policy a campaign's `safety` section sets."""
        return cls(block_severity=settings.block_severity, blocklists=dict(settings.blocklists), policy_version=settings.policy_version)


@dataclass(frozen=True)
class SafetyDecision:
    decision: Literal["approved", "blocked"]
    reasons: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.decision == "blocked"


def _is_severity(value: object) -> bool:
    # numbers.Integral also accepts numpy integers read back from a DataFrame; bool is not a severity.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= _MAX_SEVERITY


def decide(
    severities: Mapping[str, int] | None,
    blocklist_hits: Iterable[str],
    rule_hits: Iterable[str],
    policy: SafetyPolicy,
    *,
    service_error: str | None = None,
) -> SafetyDecision:
    """Approve only a fully screened, clean variant; anything missing or failed blocks it (fail closed)."""
    reasons: list[str] = []
    if service_error is not None:
        reasons.append(f"safety service failed: {service_error}")
    if severities is None:
        reasons.append("no category severities returned")
    else:
        for category in CATEGORIES:
            value = severities.get(category)
            if not _is_severity(value):
                reasons.append(f"{category} severity missing or invalid: {value!r}")
            elif value >= policy.block_severity:
                reasons.append(f"{category} severity {value} >= {policy.block_severity}")
    reasons += [f"blocklist {hit}" for hit in blocklist_hits]
    reasons += [f"rule {rule_id}" for rule_id in rule_hits]
    return SafetyDecision("blocked" if reasons else "approved", tuple(reasons))
