"""Dataset builders registered for the partner tier, and their bearer tokens.

A token is shown once, when it is issued; only its HMAC-SHA256 under a key
derived from ``SECRET_KEY`` is stored (so a leaked database does not leak
working tokens). Rotating ``SECRET_KEY`` therefore invalidates every token:
issue new ones with the admin's "issue a new token" action.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction

from optout.models import FeedConsumer

TOKEN_PREFIX = "optp_"  # noqa: S105  (a prefix that makes leaked tokens easy to scan for, not a secret)


def token_hmac(token: str) -> str:
    key = hashlib.sha256(b"optout.feed-token" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and the HMAC to store for it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hmac(token)


@transaction.atomic
def register_consumer(*, name: str, contact: str) -> tuple[FeedConsumer, str]:
    """Create a consumer; returns it and its token (shown once, never stored)."""
    token, digest = new_token()
    consumer = FeedConsumer.objects.create(name=name, contact=contact, token_hmac=digest)
    return consumer, token


@transaction.atomic
def issue_token(consumer: FeedConsumer) -> str:
    """Replace a consumer's token; the old one stops working at once. Returns the new token."""
    token, digest = new_token()
    FeedConsumer.objects.filter(pk=consumer.pk).update(token_hmac=digest)
    consumer.token_hmac = digest
    return token


def find_consumer(token: str) -> FeedConsumer | None:
    """The active consumer holding ``token``, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return FeedConsumer.objects.filter(token_hmac=token_hmac(token), active=True).first()
