"""Staff login attempts are limited per client address and per user name from a client; neither is stored."""

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

import config.admin
from config.admin import STAFF_LOGIN_PER_CLIENT, STAFF_LOGIN_PER_USERNAME
from tests import users

LOGIN = "/admin/login/"
PASSWORD = "a-long-test-password"
ATTACKER = "203.0.113.9"


@pytest.fixture(autouse=True)
def own_cache(settings):
    """A cache of this process only: other test runs sharing var/test clear the file cache at will."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "login-limit"}
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, not security
    users.staff("rita", password=PASSWORD)
    users.staff("sam", password=PASSWORD)


def attempt(client, username, password, address):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address)


def test_the_limits_are_what_the_tests_assume():
    assert STAFF_LOGIN_PER_CLIENT.count == STAFF_LOGIN_PER_USERNAME.count == 10


def test_failed_logins_from_one_client_end_in_429(client, staff):
    for n in range(STAFF_LOGIN_PER_CLIENT.count):
        response = attempt(client, f"guess{n}", "wrong-password", ATTACKER)
        assert response.status_code == 200, n  # the form again, with its error
        assert "Please enter the correct username and password" in response.content.decode()
    limited = attempt(client, "rita", PASSWORD, ATTACKER)  # even the right password: refused before checking
    assert limited.status_code == 429
    assert limited["Content-Type"].startswith("text/plain")
    assert limited.content.decode() == config.admin.LOGIN_LIMITED_MESSAGE
    assert int(limited["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    # Another user name from another address is not affected.
    other = attempt(client, "sam", PASSWORD, "198.51.100.7")
    assert other.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(username="sam").pk)


def test_one_user_name_tried_from_many_addresses_does_not_lock_its_owner_out(client, staff):
    """The user name is counted per client, never alone: knowing a reviewer's name locks nobody out."""
    for n in range(STAFF_LOGIN_PER_USERNAME.count + 2):
        assert attempt(client, "rita", "wrong-password", f"198.51.100.{n + 1}").status_code == 200
    assert attempt(client, "rita", PASSWORD, "192.0.2.50").status_code == 302


def test_one_user_name_tried_from_one_address_ends_in_429(client, staff):
    for n in range(STAFF_LOGIN_PER_USERNAME.count):
        assert attempt(client, "rita", f"wrong-{n}", "2001:db8:5::1").status_code == 200
    assert attempt(client, "rita", PASSWORD, "2001:db8:5::2").status_code == 429  # the same /64
    assert attempt(client, "sam", PASSWORD, "192.0.2.51").status_code == 302


def test_the_login_page_itself_still_loads(client, staff):
    for _ in range(STAFF_LOGIN_PER_CLIENT.count + 1):
        attempt(client, "rita", "wrong-password", ATTACKER)
    assert client.get(LOGIN, REMOTE_ADDR=ATTACKER).status_code == 200


def test_neither_the_address_nor_the_user_name_is_stored(client, staff, monkeypatch):
    counted = []
    real_hit = config.admin.hit

    def recording_hit(limit, ident):
        counted.append((limit.scope, ident))
        return real_hit(limit, ident)

    monkeypatch.setattr(config.admin, "hit", recording_hit)
    for _ in range(3):
        attempt(client, "rita", "wrong-password", ATTACKER)
    assert {scope for scope, _ in counted} == {"staff-login", "staff-login-user"}
    for _scope, ident in counted:
        assert ATTACKER not in ident and "rita" not in ident
        assert len(ident) == 32 and int(ident, 16) >= 0  # a keyed hash
    stored = b"".join(key.encode() + value for key, value in cache._cache.items())  # LocMemCache: pickled values
    assert len(cache._cache) == 2
    assert ATTACKER.encode() not in stored and b"rita" not in stored
