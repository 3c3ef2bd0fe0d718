"""`cpo`, the command line: run a campaign wave, backfill a segment, plan, audit, open the UI."""

from personalization_assets.cli.commands import main

__all__ = ["main"]
