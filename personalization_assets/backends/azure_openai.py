"""Message variants from Azure OpenAI, or any OpenAI-compatible server, through the `openai` SDK.

One chat completion per variant: the request's messages exactly as rendered (a repair request
carries its extra turns; nothing is added or dropped here), `response_format` JSON object, and
the answer parsed into a `GeneratedVariant` (subject, body, call to action, cited document ids).
Judging the email (length, grounding, links) is not this module's job: the project's validation
and screening do that for every backend alike.

- Cost: tokens from the response's `usage`, priced from `PRICES_PER_MILLION` by the model the
  service reports (Azure names a deployment; the response names the model behind it).
- A content-filter refusal, an HTTP 400 with code `content_filter` or a completion whose
  `finish_reason` is `content_filter`, comes back as a refused variant with that reason; so does
  an answer that is not the JSON object asked for, and a call that failed for good. A refused
  variant is blocked at screening; nothing raises.
- Retries: the SDK's own are off (`max_retries=0`); `retry.call_with_retry` retries 408/429/5xx,
  timeouts, dropped connections and unreadable responses, honouring `retry-after-ms`/`Retry-After`.
- Cache: every answer that parsed is stored under the SHA-256 of the full request (backend kind,
  model, messages, parameters). A re-run finds it and sends nothing; identical requests in one
  run (the control message is the same for every segment) are sent once. A cached or duplicate
  answer costs nothing, so the table's token and cost columns add up to what this run paid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import openai

from personalization_assets.backends.cache import ResponseCache, request_key
from personalization_assets.backends.concurrency import bounded_map
from personalization_assets.backends.retry import (
    Failure,
    RetriesExhausted,
    RetryPolicy,
    ServiceStats,
    call_with_retry,
    status_failure,
)
from personalization_assets.messages.generation import GeneratedVariant, VariantRequest

AZURE_OPENAI_BACKEND = "azure-openai"
COMPATIBLE_BACKEND = "openai-compatible"
RESPONSE_FORMAT = {"type": "json_object"}
CONTENT_FILTER = "content_filter"
# USD per million tokens (input, output): list prices of the global standard deployments, 2025.
# Matched by the longest prefix of the model name, so dated versions ("gpt-4o-2024-08-06") find
# theirs. A model not listed costs 0.0 and the resource's metadata says it is unpriced; set
# explicit prices on the resource for it. Local servers (Ollama, vLLM) cost nothing per token.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-35-turbo": (0.50, 1.50),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
}
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def price_per_million(model: str, table: Mapping[str, tuple[float, float]] = PRICES_PER_MILLION) -> tuple[float, float] | None:
    name = model.lower()
    matches = [prefix for prefix in table if name.startswith(prefix.lower())]
    return table[max(matches, key=len)] if matches else None


def cost_usd(input_tokens: int, output_tokens: int, prices: tuple[float, float] | None) -> float:
    if prices is None:
        return 0.0
    return round((input_tokens * prices[0] + output_tokens * prices[1]) / 1_000_000, 8)


@dataclass(frozen=True)
class ChatSettings:
    """What decides an answer besides the messages; all of it is part of the cache key."""

    backend: str  # AZURE_OPENAI_BACKEND or COMPATIBLE_BACKEND
    model: str  # the Azure deployment name, or the compatible server's model name
    temperature: float | None = 0.7
    max_tokens: int | None = 1200
    seed: int | None = None
    # (input, output) USD per million tokens; None: look the model up in PRICES_PER_MILLION.
    prices: tuple[float, float] | None = None


def chat_payload(request: VariantRequest, settings: ChatSettings) -> dict[str, Any]:
    """The chat completion request: the variant's messages exactly as given, JSON output asked for."""
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": [dict(message) for message in request.messages],
        "response_format": dict(RESPONSE_FORMAT),
    }
    if settings.temperature is not None:
        payload["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        payload["max_tokens"] = settings.max_tokens
    if settings.seed is not None:
        payload["seed"] = settings.seed
    return payload


def cache_key(payload: Mapping[str, Any], settings: ChatSettings) -> str:
    return request_key({"backend": settings.backend, **payload})


def _usage(completion: Mapping[str, Any]) -> tuple[int, int]:
    usage = completion.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return ()
    return tuple(dict.fromkeys(str(item).strip() for item in value if str(item).strip()))


def parse_email_json(content: str | None) -> dict[str, Any]:
    """The model's JSON object; raises ValueError saying what is wrong with it."""
    if content is None or not content.strip():
        raise ValueError("empty answer")
    fenced = _FENCE.match(content)
    try:
        parsed = json.loads(fenced.group(1) if fenced else content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
    missing = [key for key in ("subject", "body") if not isinstance(parsed.get(key), str)]
    if missing:
        raise ValueError(f"missing or non-text keys {missing}")
    return parsed


def refused(reason: str, settings: ChatSettings, *, model: str | None = None, input_tokens: int = 0,
            output_tokens: int = 0, cost: float = 0.0, **extras: object) -> GeneratedVariant:
    return GeneratedVariant(
        subject="", body="", cta="", citations=(), backend=settings.backend, model=model or settings.model,
        input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost, refusal=reason, extras=extras,
    )


def variant_from_completion(completion: Mapping[str, Any], settings: ChatSettings) -> GeneratedVariant:
    """A chat completion (as JSON) read into a variant, or a refusal saying why it is not one."""
    model = str(completion.get("model") or settings.model)
    input_tokens, output_tokens = _usage(completion)
    prices = settings.prices or price_per_million(model) or price_per_million(settings.model)
    billed = {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
              "cost": cost_usd(input_tokens, output_tokens, prices)}
    choices = completion.get("choices") or []
    if not choices:
        return refused("malformed response: no choices", settings, **billed)
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == CONTENT_FILTER:
        return refused("content_filter: the service filtered the generated email (finish_reason=content_filter)",
                       settings, **billed)
    try:
        email = parse_email_json((choice.get("message") or {}).get("content"))
    except ValueError as exc:
        suffix = f" (finish_reason={finish})" if finish not in (None, "stop") else ""
        return refused(f"malformed model output: {exc}{suffix}", settings, **billed)
    return GeneratedVariant(
        subject=email["subject"],
        body=email["body"],
        cta=str(email.get("cta") or ""),
        citations=_text_list(email.get("citations")),
        backend=settings.backend,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=billed["cost"],
        extras={"priced": prices is not None},
    )


def content_filter_reason(exc: BaseException) -> str | None:
    """The refusal reason when the service refused the prompt with code `content_filter`."""
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 400 and exc.code == CONTENT_FILTER:
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        return f"content_filter: {' '.join(str(message or exc.message).split())[:300]}"
    return None


def classify_openai_error(exc: BaseException) -> Failure | None:
    """How an `openai` SDK exception reads: retryable or not, and the server's requested wait."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure(True, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(True, "connection")
    if isinstance(exc, openai.APIStatusError):
        return status_failure(exc.status_code, exc.response.headers)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        return Failure(True, "malformed")
    return None


def _safe_error(exc: BaseException) -> str:
    # SDK messages carry the status and the service's message, never the request's headers.
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def azure_client(*, endpoint: str, api_key: str, api_version: str, deployment: str, timeout: float) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=endpoint, api_key=api_key, api_version=api_version, azure_deployment=deployment,
        max_retries=0, timeout=timeout,
    )


def compatible_client(*, base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)


def completion_function(client: openai.OpenAI) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`payload -> completion as JSON` over an SDK client (Azure or compatible)."""

    def create(payload: dict[str, Any]) -> dict[str, Any]:
        return client.chat.completions.create(**payload).model_dump(mode="json", exclude_none=True)

    return create


class ChatGenerator:
    """Generates variants through `create` (one chat completion), with cache, retries and a pool."""

    def __init__(
        self,
        create: Callable[[dict[str, Any]], dict[str, Any]],
        settings: ChatSettings,
        *,
        policy: RetryPolicy,
        stats: ServiceStats,
        cache: ResponseCache | None,
        max_concurrency: int,
        sleep: Callable[[float], Any] | None = None,
    ):
        self.create = create
        self.settings = settings
        self.policy = policy
        self.stats = stats
        self.cache = cache
        self.max_concurrency = max_concurrency
        self.sleep = sleep

    def _call(self, payload: dict[str, Any], key: str) -> GeneratedVariant:
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            self.stats.count("cache_hits")
            answer = variant_from_completion(cached, self.settings)
            return replace(answer, input_tokens=0, output_tokens=0, cost_usd=0.0, extras={**answer.extras, "source": "cache"})
        self.stats.count("calls")
        options = {"sleep": self.sleep} if self.sleep else {}
        try:
            completion = call_with_retry(
                lambda: self.create(payload), policy=self.policy, classify=classify_openai_error, stats=self.stats,
                what=f"{self.settings.backend} chat completion", **options,
            )
        except Exception as exc:
            if reason := content_filter_reason(exc):
                self.stats.count("content_filtered")
                return refused(reason, self.settings)
            cause = exc.__cause__ if isinstance(exc, RetriesExhausted) and exc.__cause__ else exc
            self.stats.count("failed_variants")
            detail = str(exc) if isinstance(exc, RetriesExhausted) else _safe_error(cause)
            return refused(f"generation failed: {detail}", self.settings)
        answer = variant_from_completion(completion, self.settings)
        if answer.refusal is None:
            if not answer.extras.get("priced"):
                self.stats.count("unpriced_calls")
            if self.cache is not None:
                self.cache.put(key, completion)
        elif answer.refusal.startswith(CONTENT_FILTER):
            self.stats.count("content_filtered")
        else:
            self.stats.count("malformed_answers")
        return replace(answer, extras={**answer.extras, "source": "service"})

    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        """One variant per request, in order. Identical requests are sent once."""
        payloads = [chat_payload(request, self.settings) for request in requests]
        keys = [cache_key(payload, self.settings) for payload in payloads]
        unique = {key: payload for key, payload in zip(keys, payloads, strict=True)}
        answers = dict(zip(unique, bounded_map(lambda item: self._call(item[1], item[0]), unique.items(), self.max_concurrency),
                           strict=True))
        results, seen = [], set()
        for key in keys:
            answer = answers[key]
            if key in seen:  # the same answer again, paid once
                self.stats.count("duplicates")
                answer = replace(answer, input_tokens=0, output_tokens=0, cost_usd=0.0, extras={**answer.extras, "source": "duplicate"})
            seen.add(key)
            results.append(answer)
        return results
