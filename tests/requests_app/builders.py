"""Small builders for removal-request tests."""

import random

from django.db import transaction

from requests_app import services
from requests_app.models import ReferenceSignal, RemovalRequest


def reference(phash: int | None = None, *, pdq: int | None = None, sha256: str | None = None) -> services.Reference:
    rng = random.Random(phash)
    return services.Reference(
        phash=phash if phash is not None else rng.getrandbits(64),
        pdq=pdq,
        pdq_quality=90 if pdq is not None else 0,
        sha256=sha256 or f"{rng.getrandbits(256):064x}",
        descriptor_key="test",
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
