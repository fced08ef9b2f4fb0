"""The one-time receipt: the new case's secret carried across the redirect after the form (post/redirect/get).

The answer to the form's POST is a redirect, so refreshing the receipt never files a second case. The
secret has to reach the receipt page without being stored on our side (only its HMAC is), so it rides
in a signed cookie that only the receipt page receives (its own path, HttpOnly, SameSite=Strict, ten
minutes at most), and that page deletes the cookie as it shows the secret: a second view, a refresh or
the Back button finds no secret, and says so.
"""

from django.conf import settings
from django.core import signing

COOKIE = "optout_receipt"
PATH = "/requests/receipt/"
MAX_AGE_SECONDS = 600
_SALT = "requests_app.receipt"


def attach(response, *, case: str, secret: str) -> None:
    value = signing.dumps({"case": case, "secret": secret}, salt=_SALT)
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        path=PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


def read(request) -> tuple[str, str] | None:
    """(case, secret) from a fresh, untampered receipt cookie, or None."""
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return None
    try:
        data = signing.loads(raw, salt=_SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("case"), str) or not isinstance(data.get("secret"), str):
        return None
    return data["case"], data["secret"]


def forget(response) -> None:
    response.delete_cookie(COOKIE, path=PATH, samesite="Strict")
