"""Dataset builders registered for the partner tier, and their bearer tokens.

A token is shown once, when it is issued; only its HMAC-SHA256 (Django's
``salted_hmac``, keyed by ``SECRET_KEY``) is stored, so a leaked database does not
leak working tokens. Tokens survive a rotation of ``SECRET_KEY`` while the old key
is in ``SECRET_KEY_FALLBACKS``; after that, issue new ones with the admin's
"issue a new token" action.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils.crypto import salted_hmac

from optout.models import FeedConsumer

TOKEN_PREFIX = "optp_"  # noqa: S105  (a prefix that makes leaked tokens easy to scan for, not a secret)


_SALT = "optout.feed-token"


def token_hmac(token: str, key: str | None = None) -> str:
    """The digest stored for ``token``, under ``key`` (default: the current SECRET_KEY)."""
    return salted_hmac(_SALT, token.encode("utf-8", "surrogatepass"), secret=key, algorithm="sha256").hexdigest()


def _token_digests(token: str) -> list[str]:
    """Every digest an issued token may be stored under: each current and fallback key, and the
    construction used before ``salted_hmac`` (tokens issued then keep working)."""
    digests = []
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        digests.append(token_hmac(token, key))
        before = hashlib.sha256(_SALT.encode() + key.encode()).digest()
        digests.append(hmac.new(before, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest())
    return digests


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
    return FeedConsumer.objects.filter(token_hmac__in=_token_digests(token), active=True).first()
