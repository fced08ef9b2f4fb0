"""Monitoring, by consent: new dataset rows matched against the references of monitored cases.

A requester may ask, at intake, that we keep watching for new copies of their
pictures for a while (12 months unless they choose, at most 24; renewable from
the status page). Only then are the case's reference signals kept past its end;
when monitoring ends, or on withdrawal, they are deleted.

Whenever rows gain signals (an import with hash columns, ``hash_dataset``, a new
dataset), ``scan_dataset`` matches those rows, and only those, against every
monitored reference, whichever dataset the case named: the same pictures travel
into the next dataset. It keeps a per-dataset high-water mark (``MonitorMark``)
that moves in the same transaction as the items it adds, so it is incremental,
idempotent (a row is never added twice to a case: items are unique per URL) and
a killed worker leaves the mark where it was. The rule for what counts as a copy
is verification's (``verification.found_copy_verdict``). A copy found becomes an
item "found later"; a decided case goes back to review, where only the new items
are decided (``RemovalItem.decided_at``).
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from optout import imaging
from optout.index.watchlist import Watchlist
from optout.models import Dataset, DatasetRow
from requests_app import services, verification
from requests_app.exceptions import TransitionError
from requests_app.models import (
    CLOSED_STATES,
    DECIDED_STATES,
    ENDED_STATES,
    MonitorMark,
    ReferenceSignal,
    RemovalRequest,
    RemovalState,
    RequestEvent,
)

log = logging.getLogger(__name__)

DEFAULT_MONTHS = 12
MAX_MONTHS = 24
# Rows read per transaction of a scan: the mark moves once per chunk.
SCAN_CHUNK_ROWS = 100_000
# A worker's hashed_at is taken just before its UPDATE commits; rows hashed this recently are left
# to the next scan, so a slow commit cannot slip behind the mark.
HASHED_SETTLE = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def months_from(now: datetime, months: int) -> datetime:
    return now + timedelta(days=round(months * 365.25 / 12))


def is_monitored(removal: RemovalRequest, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return removal.monitor_until is not None and removal.monitor_until > now and removal.state not in ENDED_STATES


def _log(removal: RemovalRequest, actor: services.Actor, reason: str, now: datetime) -> None:
    RequestEvent.objects.create(
        removal=removal,
        actor=actor.user,
        actor_label=actor.label,
        from_state=removal.state,
        to_state=removal.state,
        action=RequestEvent.Action.MONITORING,
        reason=reason,
        created_at=now,
    )


# --- Consent ---------------------------------------------------------------------------


@transaction.atomic
def monitor_removal(removal: RemovalRequest, *, months: int = DEFAULT_MONTHS, email: str = "") -> RemovalRequest:
    """Watch for new copies for ``months`` (1 to MAX_MONTHS) from now: at intake, or renewed from the
    status page. ``email``, if given, is kept until monitoring ends, only to say copies were found.
    Raises TransitionError for a case that has ended or a period out of range."""
    if not 1 <= months <= MAX_MONTHS:
        raise TransitionError(f"Choose a period of 1 to {MAX_MONTHS} months.")
    if removal.state in ENDED_STATES:
        raise TransitionError(f"Case {removal.case} is {RemovalState(removal.state).label}; it cannot be monitored.")
    now = timezone.now()
    until = months_from(now, months)
    renewed = is_monitored(removal, now)
    fields = {"monitor_until": until}
    if email:
        fields["monitor_email"] = email
    RemovalRequest.objects.filter(pk=removal.pk).update(**fields)
    for name, value in fields.items():
        setattr(removal, name, value)
    verb = "renewed" if renewed else "started"
    _log(removal, services.Actor(services.REQUESTER), f"monitoring {verb} until {until:%Y-%m-%d}", now)
    return removal


@transaction.atomic
def stop_monitoring(removal: RemovalRequest, *, actor: services.Actor, reason: str) -> None:
    """End monitoring now: its e-mail is deleted, and so are the reference signals if the case is over
    (a case still open keeps them until it closes)."""
    now = timezone.now()
    RemovalRequest.objects.filter(pk=removal.pk).update(monitor_until=None, monitor_email="")
    removal.monitor_until, removal.monitor_email = None, ""
    if removal.state in CLOSED_STATES:
        delete_references(removal)
    _log(removal, actor, reason, now)


def delete_references(removal: RemovalRequest) -> int:
    """Delete a case's reference signals (its pictures' fingerprints). Returns how many there were."""
    deleted, _ = ReferenceSignal.objects.filter(removal=removal).delete()
    return deleted


def keeps_references(removal: RemovalRequest) -> bool:
    """Whether a case that ends keeps its reference signals: only while monitored, by consent."""
    return is_monitored(removal)


def end_expired(now: datetime | None = None) -> int:
    """Stop monitoring every case whose period is over. Returns how many."""
    now = now or timezone.now()
    ended = 0
    for removal in RemovalRequest.objects.filter(monitor_until__lte=now):
        stop_monitoring(removal, actor=services.Actor(services.SYSTEM), reason="monitoring period ended")
        ended += 1
    return ended


# --- Scanning new rows -----------------------------------------------------------------

_ROW_FIELDS = ("id", "phash", "pdq_0", "pdq_1", "pdq_2", "pdq_3", "sha256", "hashed_at")


@dataclass
class _Watched:
    """The monitored references in memory, rebuilt when they change."""

    version: tuple
    removal_ids: list[int]  # per signal set
    signals: dict[int, list[list]]  # removal id -> its pictures, each the list of its ImageSignals
    by_sha256: dict[str, set[int]]
    watchlist: Watchlist


@dataclass
class ScanResult:
    rows: int = 0
    found: int = 0
    reopened: int = 0
    done: bool = True
    cases: set[int] = field(default_factory=set)
    watched: _Watched | None = None  # handed to the next call, which rebuilds it only if it changed


def _monitored_references(now: datetime):
    return ReferenceSignal.objects.filter(removal__monitor_until__gt=now).exclude(removal__state__in=ENDED_STATES)


def _watched(now: datetime, previous: _Watched | None) -> _Watched:
    references = _monitored_references(now)
    version = tuple(references.aggregate(n=Max("id"), count=Max("removal_id")).values()) + (references.count(),)
    if previous is not None and previous.version == version:
        return previous
    removal_ids, phashes, pdqs = [], [], []
    pictures: dict[int, dict[int, list]] = {}
    by_sha256: dict[str, set[int]] = {}
    fields = ("removal_id", "image_index", "source", "phash", "pdq", "pdq_quality", "sha256", "variant")
    for ref in references.only(*fields).order_by("id").iterator():
        computed = verification.signals_of(ref)  # variants of a picture, where stored, come as more rows
        removal_ids.append(ref.removal_id)
        phashes.append(computed.phash)
        pdqs.append(computed.pdq)
        pictures.setdefault(ref.removal_id, {}).setdefault(ref.image_index, []).append(
            imaging.Variant(ref.variant, computed)
        )
        if computed.sha256:
            by_sha256.setdefault(computed.sha256, set()).add(ref.removal_id)
    signals = {removal_id: list(by_index.values()) for removal_id, by_index in pictures.items()}
    watchlist = Watchlist(
        phashes=phashes,
        pdqs=pdqs,
        phash_radius=settings.OPTOUT_PHASH_THRESHOLD,
        pdq_radius=settings.OPTOUT_PDQ_THRESHOLD,
    )
    return _Watched(version, removal_ids, signals, by_sha256, watchlist)


def _new_rows(dataset_id: int, mark: MonitorMark, now: datetime, limit: int) -> tuple[list, list]:
    """The next rows past each mark: imported (by id), hashed by a worker (by hashed_at, id).

    Every row past a mark is read, with or without signals, so that the mark moves past rows that have
    none (or whose hashing failed) instead of walking over them again at every scan; ``_signalled``
    keeps the ones to match."""
    rows = DatasetRow.objects.filter(dataset_id=dataset_id)
    imported = list(rows.filter(id__gt=mark.imported_until_id).order_by("id").values_list(*_ROW_FIELDS)[:limit])
    since = mark.hashed_until or _EPOCH
    hashed = list(
        rows.filter(hashed_at__gte=since, hashed_at__lte=now - HASHED_SETTLE)
        .filter(Q(hashed_at__gt=since) | Q(id__gt=mark.hashed_until_id))
        .order_by("hashed_at", "id")
        .values_list(*_ROW_FIELDS)[:limit]
    )
    return imported, hashed


def _signalled(imported: list, hashed: list) -> list:
    """The rows to match: imported ones with signals from the file (a row a worker hashed is matched on
    the hashed path, once), and hashed ones with a pHash."""
    from_file = [row for row in imported if row[7] is None and (row[1] is not None or row[6])]
    return from_file + [row for row in hashed if row[1] is not None]


def _skip_to_latest(dataset_id: int, mark: MonitorMark, now: datetime) -> None:
    rows = DatasetRow.objects.filter(dataset_id=dataset_id)
    latest_id = rows.aggregate(n=Max("id"))["n"] or 0
    settled = now - HASHED_SETTLE
    latest_hashed = (
        rows.filter(hashed_at__lte=settled).order_by("-hashed_at", "-id").values_list("hashed_at", "id").first()
    )
    mark.imported_until_id = max(mark.imported_until_id, latest_id)
    if latest_hashed and (mark.hashed_until is None or latest_hashed[0] >= mark.hashed_until):
        mark.hashed_until, mark.hashed_until_id = latest_hashed
    mark.updated_at = now
    mark.save()


def _candidates(watched: _Watched, rows: list) -> dict[int, set[int]]:
    """Row id -> ids of the monitored cases it may be a copy of."""
    pairs = watched.watchlist.match(
        phashes=[row[1] for row in rows],
        pdqs=[None if row[2] is None else (row[2], row[3], row[4], row[5]) for row in rows],
    )
    found: dict[int, set[int]] = {}
    for row_at, reference_at in pairs:
        found.setdefault(rows[row_at][0], set()).add(watched.removal_ids[reference_at])
    for row in rows:
        if row[6] and row[6] in watched.by_sha256:
            found.setdefault(row[0], set()).update(watched.by_sha256[row[6]])
    return found


def scan_dataset(dataset_id: int, *, chunk_rows: int = SCAN_CHUNK_ROWS, watched: _Watched | None = None) -> ScanResult:
    """Match one chunk of a dataset's rows that gained signals since its marks; move the marks.

    One transaction: the items found and the marks commit together or not at all. ``done`` is False
    when more rows are waiting (call again). Returns what was read and found."""
    result = ScanResult()
    MonitorMark.objects.get_or_create(dataset_id=dataset_id, defaults={"updated_at": timezone.now()})
    with transaction.atomic():
        # The lock serialises scans of a dataset: a second one waits, then starts from the moved mark.
        mark = MonitorMark.objects.select_for_update().get(dataset_id=dataset_id)
        now = timezone.now()
        if not _monitored_references(now).exists():
            # Nothing to match: the marks jump to the rows committed so far (a case monitored from now on
            # is verified against those rows anyway).
            _skip_to_latest(dataset_id, mark, now)
            return result
        imported, hashed = _new_rows(dataset_id, mark, now, chunk_rows)
        # The references are read after the rows: a case created later was verified against them already.
        watched = _watched(now, watched)
        result.watched = watched
        rows = _signalled(imported, hashed)
        result.rows = len(rows)
        result.done = len(imported) < chunk_rows and len(hashed) < chunk_rows
        if rows and watched.removal_ids:
            _add_copies(dataset_id, watched, _candidates(watched, rows), result)
        if imported:
            mark.imported_until_id = imported[-1][0]
        if hashed:
            mark.hashed_until, mark.hashed_until_id = hashed[-1][7], hashed[-1][0]
        mark.updated_at = now
        mark.save()
    return result


def _add_copies(dataset_id: int, watched: _Watched, candidates: dict[int, set[int]], result: ScanResult) -> None:
    if not candidates:
        return
    removals = {
        removal.pk: removal
        for removal in RemovalRequest.objects.filter(
            pk__in={pk for ids in candidates.values() for pk in ids}
        ).select_for_update()
    }
    added: dict[int, int] = {}
    for row in DatasetRow.objects.filter(dataset_id=dataset_id, pk__in=list(candidates)).order_by("id"):
        for removal_id in sorted(candidates[row.pk]):
            removal = removals.get(removal_id)
            if removal is None or removal.state in ENDED_STATES:
                continue
            verdict = verification.found_copy_verdict(watched.signals[removal_id], row)
            if verdict is None:
                continue
            state, evidence = verdict
            if services.add_found_item(removal, row, state=state, later=True, **evidence):
                added[removal_id] = added.get(removal_id, 0) + 1
    for removal_id, count in added.items():
        result.found += count
        result.cases.add(removal_id)
        result.reopened += _reopen(removals[removal_id], count)


def _reopen(removal: RemovalRequest, count: int) -> int:
    """A decided case with copies found later goes back to review; tell the requester if they asked."""
    reopened = 0
    if removal.state in DECIDED_STATES:
        now = timezone.now()
        services.transition(
            removal,
            RemovalState.IN_REVIEW,
            actor=services.Actor(services.SYSTEM),
            reason=f"{count} copy(ies) found later by monitoring",
            now=now,
            reopened_at=now,
        )
        reopened = 1
    if removal.monitor_email:
        _tell_requester(removal.case, removal.monitor_email, count)
    return reopened


def _tell_requester(case: str, email: str, count: int) -> None:
    copies = "1 new copy" if count == 1 else f"{count} new copies"
    subject = "New copies found for your removal request"  # no case reference in a subject line
    body = (
        f"While watching new datasets for your removal request {case}, we found {copies} of your picture.\n"
        "A reviewer will look at them. Use your case reference and secret on the 'Follow a request' page."
    )
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))


def datasets_to_scan() -> list[int]:
    """Datasets with rows past their marks (or never scanned), for the sweeper."""
    marks = {mark.dataset_id: mark for mark in MonitorMark.objects.all()}
    waiting = []
    now = timezone.now()
    for dataset_id in Dataset.objects.values_list("pk", flat=True):
        mark = marks.get(dataset_id)
        if mark is None:
            waiting.append(dataset_id)
            continue
        imported, hashed = _new_rows(dataset_id, mark, now, 1)
        if imported or hashed:  # rows without signals too: the scan moves the mark past them
            waiting.append(dataset_id)
    return waiting
