"""Small builders for removal-request tests."""

import random

from django.db import transaction

from optout import imaging
from requests_app import services
from requests_app.models import ReferenceSignal, RemovalRequest
from tests.users import staff


def reference(phash: int | None = None, *, pdq: int | None = None, sha256: str | None = None) -> services.Reference:
    rng = random.Random(phash)
    return services.Reference(
        phash=phash if phash is not None else rng.getrandbits(64),
        pdq=pdq,
        pdq_quality=90 if pdq is not None else 0,
        sha256=sha256 or f"{rng.getrandbits(256):064x}",
        descriptor_key=imaging.descriptor_key(),
        source=ReferenceSignal.Source.CLIENT,
    )


def submit(urls=("https://images.example.org/a.jpg",), references=None, **kwargs) -> tuple[RemovalRequest, str]:
    """Submit a request without running its verification (the on-commit task is not sent)."""
    with transaction.atomic():
        removal, secret = services.submit_removal(urls=list(urls), references=references or [[reference()]], **kwargs)
    return removal, secret


def force_state(removal: RemovalRequest, state: str) -> RemovalRequest:
    """Put a request in a state directly, to set up a test. Never used by the product."""
    RemovalRequest.objects.filter(pk=removal.pk).update(state=state)
    removal.refresh_from_db()
    return removal


def reviewer(username: str = "rita", *, can_review: bool = True):
    return staff(username, *(["review_removalrequest"] if can_review else []))


def in_review(item_states: list[str], **kwargs) -> RemovalRequest:
    """A request in review whose items have these verdicts."""
    from requests_app.models import RemovalItem

    urls = [f"https://images.example.org/{n}.jpg" for n in range(len(item_states))]
    removal, _ = submit(urls=urls, **kwargs)
    for item, state in zip(removal.items.order_by("id"), item_states, strict=True):
        RemovalItem.objects.filter(pk=item.pk).update(state=state, image_sha256=f"{item.pk:064x}")
    return force_state(removal, "in_review")
