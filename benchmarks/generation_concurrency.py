"""Generation-stage wall time, concurrent vs one at a time, against a slow (loopback) Azure OpenAI.

Run from the repository root:

    .venv/bin/python benchmarks/generation_concurrency.py                       # 200 ms, limits 1, 4, 8
    .venv/bin/python benchmarks/generation_concurrency.py --latency 0.5 --limits 1 16

Starts the test suite's loopback Azure double (`personalization_assets_tests/azure_double.py`)
with the given latency on every request, plans the sample campaign's real variant requests
(6 segments x 3 tones + the control, retrieved with the embedded BM25), and times
`AzureOpenAIGenerator.generate` (the real `openai.AzureOpenAI` client, retries on, response
cache off, so every run pays for every call) once per concurrency limit. Each run is preceded by
one warm-up call so connection set-up is not counted. Prints the wall time, the number of chat
requests the double received, and the speed-up over the one-at-a-time run. Nothing is asserted:
the numbers are measurements (README, "Running against Azure and OpenAI-compatible servers").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personalization_assets.defs.resources import AzureOpenAIGenerator  # noqa: E402
from personalization_assets_tests.azure_double import AzureDouble  # noqa: E402
from personalization_assets_tests.backends.support import campaign_requests  # noqa: E402

KEY = "benchmark-key"


def time_generation(double: AzureDouble, requests: list, limit: int) -> tuple[float, int]:
    generator = AzureOpenAIGenerator(
        endpoint=double.url, api_key=KEY, deployment="bench", api_version="2024-10-21", max_concurrency=limit, use_cache=False
    )
    generator.generate(requests[:1])  # warm-up: client construction, first connection
    double.reset_records()
    started = time.perf_counter()
    variants = generator.generate(requests)
    elapsed = time.perf_counter() - started
    refused = [v.refusal for v in variants if v.refusal]
    if refused:
        raise SystemExit(f"unexpected refusals: {refused[:3]}")
    return elapsed, len(double.recorded("openai", "chat"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the double waits before every answer")
    parser.add_argument("--limits", type=int, nargs="+", default=[1, 4, 8], help="concurrency limits to time (1 first)")
    args = parser.parse_args(argv)

    requests = campaign_requests()
    distinct = len({r.prompt_sha256 for r in requests})
    print(f"requests: {len(requests)} variants, {distinct} distinct chat completions; injected latency {args.latency * 1000:.0f} ms")
    with AzureDouble(openai_key=KEY, latency=args.latency) as double:
        baseline = None
        print(f"{'max_concurrency':>15} {'wall time':>10} {'requests':>9} {'speed-up':>9}")
        for limit in args.limits:
            elapsed, sent = time_generation(double, requests, limit)
            baseline = baseline or elapsed
            print(f"{limit:>15} {elapsed:>9.2f}s {sent:>9} {baseline / elapsed:>8.1f}x")


if __name__ == "__main__":
    main()
