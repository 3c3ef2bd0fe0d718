"""Dagster wiring: thin assets, checks, partitions, jobs and schedules over the pure modules."""
