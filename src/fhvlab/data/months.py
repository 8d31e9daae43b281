"""Dates and months: parsing what a student types and deriving the months a run needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from fhvlab.errors import BadInput

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, e.g. Month(2021, 8) printed as 2021-08."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise BadInput(f"month {self.year}-{self.month:02d} does not exist (expected YYYY-MM)")

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Month:
        """Return the month `months` calendar months later (earlier when negative)."""
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)


def parse_date(text: str) -> date:
    """Parse a run date written YYYY-MM-DD (e.g. 2021-08-15); raise BadInput otherwise."""
    value = text.strip()
    if not _DATE_RE.fullmatch(value):
        raise BadInput(f"date {text!r} is not in the expected format YYYY-MM-DD (e.g. 2021-08-15)")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadInput(f"date {text!r} is not a real calendar day ({exc})") from None


def parse_month(text: str) -> Month:
    """Parse a month written YYYY-MM (e.g. 2021-08); raise BadInput otherwise."""
    match = _MONTH_RE.fullmatch(text.strip())
    if not match:
        raise BadInput(f"month {text!r} is not in the expected format YYYY-MM (e.g. 2021-08)")
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        raise BadInput(f"month {text!r} is not in the expected format YYYY-MM (month 01-12)")
    return Month(year, month)


def months_for(run_date: date) -> tuple[Month, Month]:
    """Return (training month, validation month): two and one calendar months before."""
    current = Month(run_date.year, run_date.month)
    return current.shift(-2), current.shift(-1)
