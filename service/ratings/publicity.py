"""The publicity period (公示期) a publication opens: until when objections are heard, and where.

The measure names no period, so its length is configuration (CREDIT_PUBLICITY_DAYS, default 7
calendar days) and so is the contact (CREDIT_OBJECTION_CONTACT). Days are counted as the Civil
Code counts periods (民法典 第二百零一条: the day of publication is not counted, the period
starts the next day) on the Beijing calendar, and the last day ends at 24:00 Beijing time.

The end is computed from the snapshot's `published_at`, never stored in it: a snapshot's
content and chain hashes stay exactly what they were. The period is the latest published
revision's: a correction opens a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from service.core.clock import BEIJING
from service.core.settings import Settings
from service.ratings.snapshots import Snapshot


@dataclass(frozen=True)
class Publicity:
    """A published revision's publicity period: its last day, the instant it closes (24:00
    Beijing time on that day), and where objections go."""

    year: int
    revision: int
    starts_on: date
    ends_on: date
    closes_at: datetime
    contact: str
    days: int

    def is_open(self, at: datetime) -> bool:
        return at < self.closes_at

    @property
    def deadline(self) -> str:
        """The deadline in words, as messages give it."""
        return f"{self.ends_on.isoformat()} 24:00 (Beijing time)"


def publicity(snapshot: Snapshot, settings: Settings) -> Publicity | None:
    """The publicity period of a published snapshot (None for a draft)."""
    if snapshot.published_at is None:
        return None
    return period(
        snapshot,
        published_at=snapshot.published_at,
        days=settings.publicity_days,
        contact=settings.objection_contact_shown,
    )


def period(snapshot: Snapshot, *, published_at: datetime, days: int, contact: str) -> Publicity:
    """The period of `days` calendar days after the day of `published_at` (Beijing)."""
    published_on = published_at.astimezone(BEIJING).date()
    ends_on = published_on + timedelta(days=days)
    closes_at = datetime.combine(ends_on + timedelta(days=1), time(0), tzinfo=BEIJING)
    return Publicity(
        year=snapshot.year,
        revision=snapshot.revision,
        starts_on=published_on + timedelta(days=1),
        ends_on=ends_on,
        closes_at=closes_at,
        contact=contact,
        days=days,
    )
