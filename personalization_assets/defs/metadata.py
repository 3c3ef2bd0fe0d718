"""Asset metadata shared by the stages: row counts, segments covered, what a service backend did."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def segment_metadata(frame: pd.DataFrame, **extra: object) -> dict[str, object]:
    return {"dagster/row_count": len(frame), "segments": ", ".join(sorted(frame["segment"].unique())), **extra}


def service_metadata(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, object]:
    """What a remote backend did for this asset (requests sent, retries by reason, cache hits), as
    `service_*` metadata; nothing for an embedded backend. The counters are per run, so the
    difference across the asset's own calls is exact."""
    if not after:
        return {}
    delta = {name: after[name] - before.get(name, 0) for name in sorted(after)}
    delta.setdefault("retries", 0)
    return {f"service_{name}": (round(value, 3) if isinstance(value, float) else int(value))
            for name, value in delta.items() if value or name in ("requests", "retries")}
