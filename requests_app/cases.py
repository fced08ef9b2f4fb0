"""Case references and their secrets.

The requester gets a case reference and a secret, shown once. We keep only an
HMAC-SHA256 of the secret (Django's ``salted_hmac``, keyed by SECRET_KEY): the
secret has 192 random bits, so a slow hash would add nothing, while the server
key means a leaked database alone cannot confirm a guessed secret.
SECRET_KEY_FALLBACKS are honoured, so rotating SECRET_KEY does not lock
requesters out.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

# Crockford's base32 without I, L, O, U: easy to read aloud and to type.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SALT = "requests_app.case-secret"


def new_case_reference() -> str:
    """A reference like ``OPT-7KQ2-MX4P-9DZ3`` (60 random bits)."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"OPT-{chars[0:4]}-{chars[4:8]}-{chars[8:12]}"


def normalise_case_reference(text: str) -> str:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    cleaned = cleaned.removeprefix("OPT")
    cleaned = cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))
    if len(cleaned) != 12:
        return ""
    return f"OPT-{cleaned[0:4]}-{cleaned[4:8]}-{cleaned[8:12]}"


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def _hmac(secret: str, key: str) -> str:
    return salted_hmac(_SALT, secret.strip(), secret=key, algorithm="sha256").hexdigest()


def _hmac_before_salted(secret: str, key: str) -> str:
    # The construction of cases filed before salted_hmac was used; their secrets must keep working.
    derived = hashlib.sha256(_SALT.encode() + key.encode()).digest()
    return hmac.new(derived, secret.strip().encode(), hashlib.sha256).hexdigest()


def secret_hmac(secret: str) -> str:
    return _hmac(secret, settings.SECRET_KEY)


def secret_matches(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against every current and fallback key (every digest is computed)."""
    ok = False
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        ok |= constant_time_compare(_hmac(secret, key), stored)
        ok |= constant_time_compare(_hmac_before_salted(secret, key), stored)
    return ok
