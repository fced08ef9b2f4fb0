"""Intake: a new request with its links and reference signals; finding a case again; withdrawal."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from optout.client.canonical import url_sha256
from optout.imaging import hashbits
from optout.models import Dataset
from requests_app import cases
from requests_app.models import ReferenceSignal, RemovalItem, RemovalRequest, RemovalState, RequestEvent
from requests_app.services.review import release_holds
from requests_app.services.transitions import REQUESTER, Actor, transition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """Signals of one reference image, as the intake hands them over."""

    phash: int
    pdq: int | None
    pdq_quality: int
    sha256: str  # "" for a variant
    descriptor_key: str
    source: str  # ReferenceSignal.Source
    variant: str = ""  # optout.imaging.variants name; "" the picture itself


@transaction.atomic
def submit_removal(
    *,
    urls: Sequence[str],
    references: Sequence[Sequence[Reference]],
    dataset: Dataset | None = None,
    contact_email: str = "",
    monitor_months: int = 0,
    monitor_email: str = "",
) -> tuple[RemovalRequest, str]:
    """Create a removal request in state ``received`` and schedule its verification.

    ``references`` holds, per reference image, one or more signal sets. With
    ``monitor_months``, new dataset rows are watched for copies that long (see
    ``monitoring``). Returns the request and its secret, which is not stored and
    cannot be shown again.
    """
    now = timezone.now()
    secret = cases.new_secret()
    removal = RemovalRequest.objects.create(
        case=_unused_case_reference(),
        secret_hmac=cases.secret_hmac(secret),
        state=RemovalState.RECEIVED,
        dataset=dataset,
        contact_email=contact_email,
        created_at=now,
        state_changed_at=now,
        # Picked up by a worker well before this, or queued again by the sweeper.
        check_deadline=now + timedelta(seconds=settings.OPTOUT_RECEIVED_GRACE_SECONDS),
    )
    seen: set[str] = set()
    items = []
    for url in urls:
        digest = url_sha256(url)
        if digest not in seen:
            seen.add(digest)
            items.append(RemovalItem(removal=removal, url=url, url_sha256=digest))
    RemovalItem.objects.bulk_create(items)
    store_references(removal, references)
    RequestEvent.objects.create(
        removal=removal, actor_label=REQUESTER, from_state="", to_state=RemovalState.RECEIVED, created_at=now
    )
    if monitor_months:
        from requests_app import monitoring  # imported here: monitoring builds on these services

        monitoring.monitor_removal(removal, months=monitor_months, email=monitor_email)
    schedule_verification(removal)
    return removal, secret


def store_references(
    removal: RemovalRequest, references: Sequence[Sequence[Reference]], *, first_index: int = 0
) -> None:
    """Keep the signals of each reference image (never the image), numbered from ``first_index``."""
    ReferenceSignal.objects.bulk_create(
        ReferenceSignal(
            removal=removal,
            image_index=index,
            source=ref.source,
            phash=hashbits.phash_to_hex(ref.phash),
            pdq=hashbits.pdq_to_hex(ref.pdq) if ref.pdq is not None else "",
            pdq_quality=ref.pdq_quality,
            sha256=ref.sha256,
            descriptor_key=ref.descriptor_key,
            variant=ref.variant,
        )
        for index, variants in enumerate(references, start=first_index)
        for ref in variants
    )


def _unused_case_reference() -> str:
    for _ in range(5):
        case = cases.new_case_reference()
        if not RemovalRequest.objects.filter(case=case).exists():
            return case
    raise RuntimeError("could not draw an unused case reference")  # 60 random bits: never in practice


def schedule_verification(removal: RemovalRequest) -> None:
    # Imported here to break the one real cycle: tasks -> verification -> services -> tasks.
    from requests_app.tasks import verify_removal

    removal_id = removal.pk

    def send() -> None:
        # A broker outage must not lose the request: it is in PostgreSQL already,
        # and the sweeper re-queues anything left in `received` or `checking`.
        try:
            verify_removal.delay(removal_id)
        except Exception:  # noqa: BLE001 (any broker failure)
            log.warning("could not enqueue verification of request %s; the sweeper will", removal_id)

    transaction.on_commit(send)


@transaction.atomic
def withdraw_removal(removal: RemovalRequest, *, actor: Actor | None = None, reason: str = "") -> RemovalRequest:
    """Any state -> withdrawn. Deletes the contact e-mail and the reference signals, and lifts any block
    the request put in place (the next release carries tombstones). Raises TransitionError if already
    withdrawn."""
    transition(removal, RemovalState.WITHDRAWN, actor=actor or Actor(REQUESTER), reason=reason)
    release_holds(removal)
    from requests_app import monitoring  # imported here: monitoring builds on these services

    if removal.monitor_until is not None:
        monitoring.stop_monitoring(removal, actor=actor or Actor(REQUESTER), reason="monitoring ends with the case")
    monitoring.delete_references(removal)
    return removal


def find_case(case: str, secret: str) -> RemovalRequest | None:
    """The request for this case reference and secret, or None.

    A wrong secret and an unknown case look the same to the caller, and take
    the same time: the HMAC is computed either way.
    """
    reference = cases.normalise_case_reference(case)
    removal = RemovalRequest.objects.filter(case=reference).first() if reference else None
    stored = removal.secret_hmac if removal else "0" * 64
    if cases.secret_matches(secret, stored) and removal is not None:
        return removal
    return None
