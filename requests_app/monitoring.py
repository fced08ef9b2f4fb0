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

import numpy as np
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from optout import imaging
from optout.imaging import hashbits
from optout.index.watchlist import Hashes, Watchlist
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
MONITORING = RequestEvent.Action.MONITORING


def months_from(now: datetime, months: int) -> datetime:
    return now + timedelta(days=round(months * 365.25 / 12))


def is_monitored(removal: RemovalRequest, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return removal.monitor_until is not None and removal.monitor_until > now and removal.state not in ENDED_STATES


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
    services.log_action(
        removal, services.Actor(services.REQUESTER), MONITORING, f"monitoring {verb} until {until:%Y-%m-%d}", now=now
    )
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
    services.log_action(removal, actor, MONITORING, reason, now=now)


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

_ROW_FIELDS = ("id", "phash", "pdq_0", "pdq_1", "pdq_2", "pdq_3", "pdq_quality", "sha256", "hashed_at")
_HASHED_AT = 8
# Rows fetched at a time from the server-side cursor that streams a chunk.
_FETCH_ROWS = 10_000


@dataclass
class _Watched:
    """The monitored references in memory (only their hashes and owners), rebuilt when they change."""

    version: tuple  # of the monitored references (``_version``)
    glance: tuple  # of every reference and the monitored cases (``_glance``): when unchanged, so is version
    removal_ids: np.ndarray  # the case of each reference signal set, by position in the watchlist
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


def _hex_words(texts: list[str], digits: int) -> np.ndarray:
    """Hex hashes as an (n, digits // 16) uint64 array: all at once, or one by one (hashbits' checks) if
    any is not plain hex of the right length."""
    words = digits // 16
    try:
        if all(len(text) == digits for text in texts):
            packed = bytes.fromhex("".join(texts))
            if len(packed) == len(texts) * digits // 2:
                return np.frombuffer(packed, dtype=">u8").astype(np.uint64).reshape(-1, words)
    except ValueError:
        pass
    parse = hashbits.phash_from_hex if digits == 16 else hashbits.pdq_from_hex
    values = [parse(text) for text in texts]
    return np.array(
        [[(value >> (64 * i)) & hashbits.MAX64 for i in reversed(range(words))] for value in values], dtype=np.uint64
    ).reshape(-1, words)


def _glance(now: datetime) -> tuple:
    """Cheap to read (no join over the references): changes whenever a case starts or stops being
    monitored, and whenever any reference is stored."""
    monitored = RemovalRequest.objects.filter(monitor_until__gt=now).exclude(state__in=ENDED_STATES)
    cases = tuple(monitored.aggregate(n=Count("pk"), total=Sum("pk"), first=Min("pk"), last=Max("pk")).values())
    return (*cases, ReferenceSignal.objects.aggregate(last=Max("id"))["last"])


def _version(now: datetime) -> tuple:
    """Changes whenever a monitored reference is added. (A deleted one may linger in the index until a
    rebuild: it only makes a candidate, which ``_add_copies`` judges against the case's current references.)"""
    references = _monitored_references(now)
    return tuple(references.aggregate(n=Count("id"), total=Sum("id"), first=Min("id"), last=Max("id")).values())


def _watched(now: datetime, previous: _Watched | None) -> _Watched:
    """The monitored references' index: ``previous`` if they are the same. The full version (a join over
    the references) is read only when the glance moved; on a busy intake, that is at most once a chunk."""
    glance = _glance(now)
    if previous is not None and previous.glance == glance:
        return previous
    version = _version(now)
    if previous is not None and previous.version == version:
        previous.glance = glance
        return previous
    base_key = imaging.descriptor_key()
    comparable: dict[tuple[str, str], bool] = {}  # a few distinct (descriptor, variant) pairs, many rows
    removal_ids, phashes, pdqs, with_pdq = [], [], [], []
    by_sha256: dict[str, set[int]] = {}
    fields = ("removal_id", "phash", "pdq", "sha256", "variant", "descriptor_key")
    references = _monitored_references(now).order_by("id").values_list(*fields)
    for removal_id, phash, pdq, sha256, variant, key in references:
        if (key, variant) not in comparable:
            comparable[key, variant] = imaging.is_comparable(key, base_key, variant)
        if not comparable[key, variant]:
            continue  # as verification.reference_signals: bits that mean something else are not compared
        if pdq:
            with_pdq.append(len(removal_ids))
            pdqs.append(pdq)
        if sha256:
            by_sha256.setdefault(sha256, set()).add(removal_id)
        removal_ids.append(removal_id)
        phashes.append(phash)
    watchlist = Watchlist(
        phashes=Hashes.of(_hex_words(phashes, 16)),
        pdqs=Hashes(_hex_words(pdqs, 64), np.array(with_pdq, dtype=np.int64)),
        phash_radius=settings.OPTOUT_PHASH_THRESHOLD,
        pdq_radius=settings.OPTOUT_PDQ_THRESHOLD,
    )
    return _Watched(version, glance, np.array(removal_ids, dtype=np.int64), by_sha256, watchlist)


def _new_rows(dataset_id: int, mark: MonitorMark, now: datetime, limit: int) -> tuple[list, list, bool]:
    """The next rows past each mark, each stream read once in key order: imported (by id), hashed by a
    worker (by hashed_at, id); and whether more wait past them.

    Every row past a mark is read, with or without signals, so that the mark moves past rows that have
    none (or whose hashing failed) instead of walking over them again at every scan; ``_signalled``
    keeps the ones to match. Inside a transaction on PostgreSQL each stream is a server-side cursor."""
    rows = DatasetRow.objects.filter(dataset_id=dataset_id)
    # Row ids are unique, so the next `limit` ids past the first new one hold at most `limit` rows: the
    # chunk is a range of the primary key, whatever the planner knows. ("id > mark ORDER BY id LIMIT n"
    # on a fresh partition, which has no statistics yet, sorted every row past the mark at every chunk.)
    first = rows.filter(id__gt=mark.imported_until_id).aggregate(first=Min("id"))["first"]
    imported, more = [], False
    if first is not None:
        window = rows.filter(id__gte=first, id__lt=first + limit).order_by("id").values_list(*_ROW_FIELDS)
        imported = list(window.iterator(_FETCH_ROWS))
        more = rows.filter(id__gte=first + limit).exists()
    since = mark.hashed_until or _EPOCH
    hashed = (
        rows.filter(hashed_at__gte=since, hashed_at__lte=now - HASHED_SETTLE)
        .filter(Q(hashed_at__gt=since) | Q(id__gt=mark.hashed_until_id))
        .order_by("hashed_at", "id")
        .values_list(*_ROW_FIELDS)[:limit]
    )
    hashed = list(hashed.iterator(_FETCH_ROWS))
    return imported, hashed, more or len(hashed) == limit


def _signalled(imported: list, hashed: list) -> list:
    """The rows to match: imported ones with signals from the file (a row a worker hashed is matched on
    the hashed path, once), and hashed ones with a pHash."""
    from_file = [row for row in imported if row[_HASHED_AT] is None and (row[1] is not None or row[7])]
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
    """Row id -> ids of the monitored cases it may be a copy of: near a reference in pHash or PDQ, or with
    its sha256 (the candidates of ``verification.find_other_copies``). A row's PDQ is looked at only where
    verification would count it: with a pHash and a known quality (``verification.row_signals``)."""
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    phash_known = np.array([row[1] is not None for row in rows], dtype=bool)
    pdq_known = phash_known & np.array([row[2] is not None and row[6] is not None for row in rows], dtype=bool)
    phashes = np.array([[row[1] or 0] for row in rows], dtype=np.int64).reshape(-1, 1)
    pdqs = np.array([[row[w] or 0 for w in range(2, 6)] for row in rows], dtype=np.int64).reshape(-1, 4)
    row_at, reference_at = watched.watchlist.pairs(
        phashes=Hashes.of(phashes, phash_known), pdqs=Hashes.of(pdqs, pdq_known)
    )
    found: dict[int, set[int]] = {}
    for row_id, removal_id in zip(ids[row_at].tolist(), watched.removal_ids[reference_at].tolist(), strict=True):
        found.setdefault(row_id, set()).add(removal_id)
    for row in rows:
        if row[7] and row[7] in watched.by_sha256:
            found.setdefault(row[0], set()).update(watched.by_sha256[row[7]])
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
        imported, hashed, more = _new_rows(dataset_id, mark, now, chunk_rows)
        # The references are read after the rows: a case created later was verified against them already.
        watched = _watched(now, watched)
        result.watched = watched
        rows = _signalled(imported, hashed)
        result.rows = len(rows)
        result.done = not more
        if rows and len(watched.removal_ids):
            _add_copies(dataset_id, _candidates(watched, rows), result)
        if imported:
            mark.imported_until_id = imported[-1][0]
        if hashed:
            mark.hashed_until, mark.hashed_until_id = hashed[-1][_HASHED_AT], hashed[-1][0]
        mark.updated_at = now
        mark.save()
    return result


def _add_copies(dataset_id: int, candidates: dict[int, set[int]], result: ScanResult) -> None:
    """Verification's rule on the few candidates, against each case's references as verification reads them."""
    if not candidates:
        return
    removals = {
        removal.pk: removal
        for removal in RemovalRequest.objects.filter(
            pk__in={pk for ids in candidates.values() for pk in ids}
        ).select_for_update()
    }
    references: dict[int, list] = {}
    added: dict[int, int] = {}
    for row in DatasetRow.objects.filter(dataset_id=dataset_id, pk__in=list(candidates)).order_by("id"):
        for removal_id in sorted(candidates[row.pk]):
            removal = removals.get(removal_id)
            if removal is None or removal.state in ENDED_STATES:
                continue
            if removal_id not in references:
                references[removal_id] = verification.reference_signals(removal)
            if not references[removal_id]:
                continue
            verdict = verification.found_copy_verdict(references[removal_id], row)
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
        imported, hashed, _ = _new_rows(dataset_id, mark, now, 1)
        if imported or hashed:  # rows without signals too: the scan moves the mark past them
            waiting.append(dataset_id)
    return waiting
