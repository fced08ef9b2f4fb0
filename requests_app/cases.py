"""Case references and their secrets.

The requester gets a case reference and a secret, shown once. We keep only an
HMAC-SHA256 of the secret (Django's ``salted_hmac``, keyed by SECRET_KEY): the
secret has 200 random bits (192 for secrets made before they were grouped), so a
slow hash would add nothing, while the server key means a leaked database alone
cannot confirm a guessed secret. SECRET_KEY_FALLBACKS are honoured, so rotating
SECRET_KEY does not lock requesters out.
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


# What people type for the letters the alphabet leaves out.
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
SECRET_GROUPS = 8
_GROUP = 5


def normalise_case_reference(text: str) -> str:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    cleaned = cleaned.removeprefix("OPT")
    cleaned = cleaned.translate(_LOOK_ALIKES)
    if len(cleaned) != 12:
        return ""
    return f"OPT-{cleaned[0:4]}-{cleaned[4:8]}-{cleaned[8:12]}"


def new_secret() -> str:
    """A secret like ``7KQ2M-X49DZ-...``: 8 groups of 5 from the case reference's alphabet (200 random
    bits), so it reads aloud, types without look-alikes, and breaks between groups on a small screen."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_GROUPS * _GROUP))
    return "-".join(chars[i : i + _GROUP] for i in range(0, len(chars), _GROUP))


def normalise_secret(text: str) -> str:
    """The grouped form of a secret typed in any case, with or without dashes and spaces, with O for 0
    and I or L for 1; empty if it is not one (secrets made before the grouped form are compared as typed)."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t").translate(_LOOK_ALIKES)
    if len(cleaned) != SECRET_GROUPS * _GROUP or any(ch not in _ALPHABET for ch in cleaned):
        return ""
    return "-".join(cleaned[i : i + _GROUP] for i in range(0, len(cleaned), _GROUP))


def _hmac(secret: str, key: str) -> str:
    return salted_hmac(_SALT, secret.strip(), secret=key, algorithm="sha256").hexdigest()


def _hmac_before_salted(secret: str, key: str) -> str:
    # The construction of cases filed before salted_hmac was used; their secrets must keep working.
    derived = hashlib.sha256(_SALT.encode() + key.encode()).digest()
    return hmac.new(derived, secret.strip().encode(), hashlib.sha256).hexdigest()


def secret_hmac(secret: str) -> str:
    return _hmac(normalise_secret(secret) or secret, settings.SECRET_KEY)


def secret_matches(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against every current and fallback key, every digest computed:
    its grouped form (today's secrets) and the text as typed (secrets made before), under both HMAC
    constructions, so old receipts stay valid."""
    candidates = [secret, normalise_secret(secret) or secret]
    ok = False
    for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        for candidate in candidates:
            ok |= constant_time_compare(_hmac(candidate, key), stored)
            ok |= constant_time_compare(_hmac_before_salted(candidate, key), stored)
    return ok
