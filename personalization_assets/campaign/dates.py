"""Dates as users and exporting systems write them."""

from __future__ import annotations

import datetime as dt


def iso_date(value: object) -> dt.date:
    """An ISO 8601 date or timestamp ("2025-11-01", "2025-11-01T00:00:00Z", what content systems
    and ESPs export) as the date it names; ValueError otherwise."""
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return dt.datetime.fromisoformat(text).date()
