"""The public transparency report: what the service did, in totals only.

Counts of requests received, approved, rejected and withdrawn per month, the median time from a
request to its decision, the current blocklist release, and per dataset how many decoy keys the
public tier publishes (``optout.blocklist.decoys``: the price of hiding each real key in a crowd,
paid by public-tier builders who drop those rows too). Nothing here is per case: no case
reference, link, hash or reviewer. Months are calendar months in UTC; a decision counts in the month
it was made. The report is cached for a few minutes, since the page is public and its queries scan
the whole event log.
"""

import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from django.core.cache import cache
from django.db.models import Count, Min
from django.db.models.functions import TruncMonth
from django.utils import timezone

from optout.blocklist import decoys
from optout.blocklist.decoys import DatasetDecoys
from optout.blocklist.releases import kept_decoy_counts
from optout.models import Release
from requests_app.models import RemovalRequest, RemovalState, RequestEvent

CACHE_KEY = "requests_app.transparency"
CACHE_SECONDS = 300
DECISIONS = (RemovalState.APPROVED, RemovalState.REJECTED)
COUNTED = ("received", RemovalState.APPROVED, RemovalState.REJECTED, RemovalState.WITHDRAWN)


@dataclass(frozen=True)
class Month:
    month: str  # "2026-11"
    received: int = 0
    approved: int = 0
    rejected: int = 0
    withdrawn: int = 0


@dataclass(frozen=True)
class CurrentRelease:
    version: int
    created: str
    entries: int


@dataclass(frozen=True)
class Report:
    generated: str
    months: list[Month]
    totals: Month
    decisions: int
    median_hours_to_decision: float | None
    release: CurrentRelease | None
    decoys: list[DatasetDecoys] = field(default_factory=list)

    def as_json(self) -> dict:
        body = asdict(self)
        body["decoys"] = [{**asdict(count), "share": count.share} for count in self.decoys]
        return body


def _month(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m")


def _monthly_counts() -> dict[str, dict[str, int]]:
    months: dict[str, dict[str, int]] = {}
    received = (
        RemovalRequest.objects.order_by()
        .annotate(month=TruncMonth("created_at", tzinfo=UTC))
        .values("month")
        .annotate(n=Count("pk"))
    )
    for row in received:
        months.setdefault(_month(row["month"]), {})["received"] = row["n"]
    transitions = (
        RequestEvent.objects.order_by()
        .filter(action=RequestEvent.Action.TRANSITION, to_state__in=COUNTED[1:])
        .annotate(month=TruncMonth("created_at", tzinfo=UTC))
        .values("month", "to_state")
        .annotate(n=Count("removal", distinct=True))
    )
    for row in transitions:
        months.setdefault(_month(row["month"]), {})[row["to_state"]] = row["n"]
    return months


def _hours_to_decision() -> list[float]:
    """Per decided request, the hours from its arrival to its first approval or rejection."""
    first = (
        RequestEvent.objects.order_by()
        .filter(action=RequestEvent.Action.TRANSITION, to_state__in=DECISIONS)
        .values("removal")
        .annotate(decided=Min("created_at"))
        .values_list("removal__created_at", "decided")
    )
    return [(decided - created).total_seconds() / 3600 for created, decided in first]


def build_report() -> Report:
    counts = _monthly_counts()
    months = [Month(month=month, **counts[month]) for month in sorted(counts, reverse=True)]
    totals = Month(
        month="all",
        **{
            name: sum(getattr(month, name) for month in months)
            for name in ("received", "approved", "rejected", "withdrawn")
        },
    )
    hours = _hours_to_decision()
    latest = Release.objects.order_by("-version").first()
    release = (
        CurrentRelease(version=latest.version, created=latest.created_at.isoformat(), entries=latest.entries)
        if latest
        else None
    )
    return Report(
        generated=timezone.now().replace(microsecond=0).isoformat(),
        months=months,
        totals=totals,
        decisions=len(hours),
        median_hours_to_decision=round(statistics.median(hours), 1) if hours else None,
        release=release,
        decoys=decoys.decoy_counts(kept_decoy_counts(latest)),  # counting every decoy took a second or more
    )


def report() -> Report:
    return cache.get_or_set(CACHE_KEY, build_report, CACHE_SECONDS)
