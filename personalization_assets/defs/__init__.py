"""Dagster wiring only, at module level: one module per stage, plus partitions, resources, jobs.

Dagster's own loader reads this package (`dg list defs`, `dg.components.load_defs`, the
`@dg.definitions` entry point in `personalization_assets/definitions.py`); the logic each asset
runs lives in the feature folders beside it, which never import Dagster.
"""
