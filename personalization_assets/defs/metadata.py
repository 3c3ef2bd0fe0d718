"""Asset metadata shared by the stages: row counts, segments covered, what a service backend did."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd


def add_segment_metadata(context, frame: pd.DataFrame, per_segment: Callable[[pd.DataFrame], Mapping[str, object]] | None = None,
                         **run_wide: object) -> None:
    """Metadata of a per-segment asset run over one or several segment partitions: each
    partition's materialization gets its own row count and `per_segment(rows of that segment)`,
    so a partition's metadata describes that partition, not the whole run; `run_wide` (the
    backend, service counters) describes the run and goes on every partition."""
    def described(segment: str) -> dict[str, object]:
        part = frame[frame["segment"] == segment]
        return {"dagster/row_count": len(part), "segment": segment, **(per_segment(part) if per_segment else {})}

    segments = list(context.partition_keys)
    if len(segments) == 1:  # the output is that one partition (also how an asset invoked directly is run)
        context.add_output_metadata({**described(segments[0]), **run_wide})
        return
    for segment in segments:
        context.add_asset_metadata(described(segment), partition_key=segment)
    context.add_output_metadata({"run_segments": ", ".join(segments), **run_wide})


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
