"""The admin's login page, rate-limited per client and per user name.

``config/urls.py`` routes ``<OPTOUT_ADMIN_PATH>login/`` here ahead of the admin's
own URLs; everything else about logging in is Django's ``AdminSite.login``.
Every login POST counts once against the client (a keyed hash of its address,
see ``requests_app/limits.py``) and once against the user name *from that client*
(a keyed hash too): the first stops one client from trying many accounts, the
second one client from trying one account. The user name is never counted alone:
then anyone who knows a reviewer's name could lock the reviewer out from everywhere.
Guessing from many addresses is met by strong staff passwords (Django's validators).
A refused attempt is answered 429 with a plain message before any password is
checked. Neither the address nor the user name is stored, and the counters live
in the cache for one window only.
"""

from django.contrib import admin
from django.http import HttpResponse
from django.utils.crypto import salted_hmac
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from requests_app.limits import Limit, client_key, hit

STAFF_LOGIN_PER_CLIENT = Limit("staff-login", 10, 900)
STAFF_LOGIN_PER_USERNAME = Limit("staff-login-user", 10, 900)
LOGIN_LIMITED_MESSAGE = "Too many login attempts. Please wait 15 minutes and try again."


def username_key(username: str, request) -> str:
    """The counter of one user name tried from one client (never the name alone: see above)."""
    # Like the client key, a counter key lives one window: no fallback keys needed.
    value = f"{username.strip().casefold()}\n{client_key(request)}"
    return salted_hmac("config.admin.username-key", value, algorithm="sha256").hexdigest()[:32]


@sensitive_post_parameters("password")
@never_cache
def staff_login(request, extra_context=None):
    if request.method == "POST":
        # Both counters move on every attempt, whatever the first one says.
        client_wait = hit(STAFF_LOGIN_PER_CLIENT, client_key(request))
        username_wait = hit(STAFF_LOGIN_PER_USERNAME, username_key(request.POST.get("username", ""), request))
        if client_wait or username_wait:
            response = HttpResponse(LOGIN_LIMITED_MESSAGE, status=429, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(max(client_wait, username_wait))
            return response
    return admin.site.login(request, extra_context)
