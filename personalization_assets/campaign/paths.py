"""Where the tool reads its default campaign and writes everything else.

`CPO_HOME` (default `.cpo/` in the working directory) holds the warehouse, the reports, the
exports, the audit trail, the response cache and the Dagster instance.
"""

from __future__ import annotations

import os
from pathlib import Path

# The repository root when running from a checkout (the package sits directly below it).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN_ENV = "CPO_CAMPAIGN"
# The warehouse schema: one table per asset.
WAREHOUSE_SCHEMA = "personalization"


def table_exists(connection, table: str, schema: str = WAREHOUSE_SCHEMA) -> bool:
    """Whether the warehouse (a DuckDB connection) holds `schema.table` yet: an asset's table
    exists only once it was first materialized."""
    return bool(connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                                   [schema, table]).fetchone()[0])


def default_campaign_path() -> Path:
    """`CPO_CAMPAIGN` if set, else `data/campaign.yaml` in the working directory, else the checkout's."""
    if os.environ.get(CAMPAIGN_ENV):
        return Path(os.environ[CAMPAIGN_ENV]).expanduser().resolve()
    local = Path.cwd() / "data" / "campaign.yaml"
    return (local if local.is_file() else PROJECT_ROOT / "data" / "campaign.yaml").resolve()


def cpo_home() -> Path:
    """Where the warehouse, reports and Dagster instance live: `CPO_HOME`, default `.cpo/` here."""
    return Path(os.environ.get("CPO_HOME") or Path.cwd() / ".cpo").expanduser().resolve()


def warehouse_path(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "warehouse.duckdb"


def reports_dir(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "reports"


def exports_dir(home: Path | None = None) -> Path:
    """Files for other systems, one folder per wave (e.g. the rendered emails for the ESP)."""
    return (home or cpo_home()) / "exports"


def delivery_dir(home: Path | None = None) -> Path:
    """The delivery ledger and the suppression entries that flow back, shared by every campaign of this home."""
    return (home or cpo_home()) / "delivery"


def dagster_home(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "dagster"


def audit_dir(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "audit"


def cache_dir(home: Path | None = None) -> Path:
    return (home or cpo_home()) / "cache"
