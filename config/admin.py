"""The admin's login page, rate-limited per client and per user name.

``config/urls.py`` routes ``<OPTOUT_ADMIN_PATH>login/`` here ahead of the admin's
own URLs; everything else about logging in is Django's ``AdminSite.login``.
Every login POST counts once against the client (a keyed hash of its address,
see ``requests_app/limits.py``) and once against the user name (a keyed hash
too): the first stops one client from trying many accounts, the second stops
many clients from trying one. A refused attempt is answered 429 with a plain
message before any password is checked. Neither the address nor the user name
is stored, and the counters live in the cache for one window only.
"""

import hashlib
import hmac
import time

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from requests_app.limits import Limit, client_key, hit

STAFF_LOGIN_PER_CLIENT = Limit("staff-login", 10, 900)
STAFF_LOGIN_PER_USERNAME = Limit("staff-login-user", 10, 900)
LOGIN_LIMITED_MESSAGE = "Too many login attempts. Please wait 15 minutes and try again."


def username_key(username: str) -> str:
    key = hashlib.sha256(b"config.admin.username-key" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, username.strip().casefold().encode(), hashlib.sha256).hexdigest()[:32]


@sensitive_post_parameters("password")
@never_cache
def staff_login(request, extra_context=None):
    if request.method == "POST":
        # Both counters move on every attempt, whatever the first one says.
        client_ok = hit(STAFF_LOGIN_PER_CLIENT, client_key(request))
        username_ok = hit(STAFF_LOGIN_PER_USERNAME, username_key(request.POST.get("username", "")))
        if not (client_ok and username_ok):
            response = HttpResponse(LOGIN_LIMITED_MESSAGE, status=429, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(
                STAFF_LOGIN_PER_CLIENT.seconds - int(time.time()) % STAFF_LOGIN_PER_CLIENT.seconds
            )
            return response
    return admin.site.login(request, extra_context)
