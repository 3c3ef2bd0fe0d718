"""The warehouse IO manager: Dagster's DuckDB pandas IO manager, without re-reading within a run.

Every asset's table is written to the warehouse exactly as `DuckDBPandasIOManager` writes it (one
table per asset, partitions replaced in place). What changes is reading inside one run: a step
whose input was stored earlier in the same process and run gets that frame back (the columns it
asked for, as a copy) instead of reading the table it was just written to. At a million customers
a round trip through DuckDB costs about a second per wide table per reader, and the wave has a
dozen readers. Everything else reads the warehouse as before: another process (the multiprocess
executor's steps, a later run, the UI), another run, partitions other than the ones stored, and
frames whose dtypes DuckDB would not give back unchanged.

The frame handed back is the one DuckDB would return: missing text is None (as DuckDB returns a
NULL VARCHAR), the index is 0..n-1. Only plain numpy dtypes (object, bool, integers, floats)
qualify; a frame with a categorical, datetime or pandas extension column is always read back.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb_pandas import DuckDBPandasIOManager

_PLAIN_KINDS = frozenset("Obiuf")


def _as_loaded(frame: pd.DataFrame) -> pd.DataFrame | None:
    """`frame` as the warehouse would return it, or None when that cannot be guaranteed."""
    if frame.empty or not frame.columns.is_unique:
        return None  # the DuckDB handler skips empty frames; duplicate names do not round-trip
    if not all(isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_KINDS for dtype in frame.dtypes):
        return None
    if not all(isinstance(name, str) for name in frame.columns):
        return None
    loaded = frame.reset_index(drop=True) if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 else frame
    for name, dtype in frame.dtypes.items():
        if dtype == object:
            values = loaded[name].to_numpy()
            missing = pd.isna(values)
            if missing.any():
                if loaded is frame:
                    loaded = frame.copy(deep=False)
                values = values.copy()
                values[missing] = None
                loaded[name] = values
    return loaded


class _RunCache(dg.IOManager):
    """Wraps the DuckDB IO manager of one run (Dagster creates IO managers per run): writes go
    through; reads of this run's own outputs are served from memory."""

    def __init__(self, inner: dg.IOManager):
        self.inner = inner
        self.frames: dict[tuple[str, tuple[str, ...]], pd.DataFrame] = {}

    @staticmethod
    def _key(asset_key: dg.AssetKey, partitions: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        return asset_key.to_user_string(), tuple(sorted(partitions))

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.inner.handle_output(context, obj)
        if isinstance(obj, pd.DataFrame) and context.has_asset_key:
            partitions = context.asset_partition_keys if context.has_asset_partitions else ()
            loaded = _as_loaded(obj)
            if loaded is not None:
                self.frames[self._key(context.asset_key, partitions)] = loaded

    def load_input(self, context: dg.InputContext) -> object:
        frame = None
        if context.has_asset_key:
            partitions = context.asset_partition_keys if context.has_asset_partitions else ()
            frame = self.frames.get(self._key(context.asset_key, partitions))
        if frame is None:
            return self.inner.load_input(context)
        columns = (context.definition_metadata or {}).get("columns")
        if columns and not set(columns) <= set(frame.columns):
            return self.inner.load_input(context)  # let the warehouse raise its own error
        context.log.debug(f"{context.asset_key.to_user_string()}: this run's stored frame, not re-read from the warehouse")
        return (frame[list(columns)] if columns else frame).copy()


class WarehouseIOManager(DuckDBPandasIOManager):
    """`DuckDBPandasIOManager` (same configuration, same tables) that does not re-read, within a
    run and process, the frames that run has just stored."""

    def create_io_manager(self, context) -> dg.IOManager:
        return _RunCache(super().create_io_manager(context))
