"""The service's one clock: every stored moment is an aware UTC datetime from here; the
bureau's calendar (its "today", a publicity period's days) is Beijing time's."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
"""The bureau's time zone: dates people see and decide by are Beijing dates."""


def now() -> datetime:
    return datetime.now(UTC)


def beijing_date(moment: datetime) -> date:
    """The Beijing calendar day of an aware moment (UTC is 8 hours behind: before 08:00 in
    Beijing, the UTC date is still yesterday)."""
    return moment.astimezone(BEIJING).date()
