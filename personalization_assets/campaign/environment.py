"""Environment tuning of the remote service backends, as a typed model.

`CPO_MAX_CONCURRENCY`, `CPO_RETRY_MAX_ATTEMPTS`, `CPO_RETRY_MAX_BACKOFF_SECONDS`,
`CPO_HTTP_TIMEOUT_SECONDS`, `CPO_RETRY_BUDGET_SECONDS` and `CPO_GENERATION_CACHE` tune every remote backend (Azure OpenAI,
an OpenAI-compatible server, Azure AI Search, Azure AI Content Safety); the campaign's
`generation.max_concurrency` is the default concurrency. A malformed value is a ConfigError naming
the variable, never a traceback and never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, StrictBool, ValidationError, field_validator

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.files import StrictModel

VARIABLES = {
    "CPO_MAX_CONCURRENCY": "max_concurrency",
    "CPO_RETRY_MAX_ATTEMPTS": "max_attempts",
    "CPO_RETRY_MAX_BACKOFF_SECONDS": "max_backoff_seconds",
    "CPO_HTTP_TIMEOUT_SECONDS": "timeout_seconds",
    "CPO_RETRY_BUDGET_SECONDS": "retry_budget_seconds",
    "CPO_GENERATION_CACHE": "use_cache",
}
_OFF = frozenset({"off", "0", "false", "no"})
_ON = frozenset({"on", "1", "true", "yes"})


class ServiceTuning(StrictModel):
    max_concurrency: int = Field(4, gt=0)
    max_attempts: int = Field(20, gt=0)
    max_backoff_seconds: float = Field(30.0, ge=0)
    timeout_seconds: float = Field(60.0, gt=0)
    retry_budget_seconds: float = Field(60.0, gt=0)
    use_cache: StrictBool = True

    @field_validator("use_cache", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lower() in _OFF:
                return False
            if value.lower() in _ON:
                return True
            raise ValueError(f"must be one of {sorted(_ON | _OFF)}")
        return value

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, max_concurrency: int) -> ServiceTuning:
        """The tuning the environment asks for; blank variables count as unset."""
        given = {field: environ[variable].strip() for variable, field in VARIABLES.items()
                 if environ.get(variable, "").strip()}
        try:
            return cls.model_validate({"max_concurrency": max_concurrency, **given})
        except ValidationError as exc:
            names = {field: variable for variable, field in VARIABLES.items()}
            problems = [
                f"{names.get(str(error['loc'][0]), error['loc'][0])} "
                + ("must be a number" if error["type"].endswith("_parsing") else str(error["msg"]).removeprefix("Value error, ").lower())
                + f", got {error['input']!r}"
                for error in exc.errors(include_url=False)
            ]
            raise ConfigError("environment", "; ".join(problems)) from None

    def resource_fields(self) -> dict[str, object]:
        return {"max_concurrency": self.max_concurrency, "max_attempts": self.max_attempts,
                "max_backoff_seconds": self.max_backoff_seconds, "timeout_seconds": self.timeout_seconds,
                "retry_budget_seconds": self.retry_budget_seconds}
