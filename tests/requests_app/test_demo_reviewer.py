"""`ensure_reviewer`, which `make run` calls: a login that can review and publish, and nothing more."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from requests_app.aftercare import PUBLISH_PERMISSION
from requests_app.services import REVIEW_PERMISSION

pytestmark = pytest.mark.django_db


def _ensure(tmp_path):
    call_command("ensure_reviewer", "--password-file", str(tmp_path / "reviewer_password"), stdout=io.StringIO())
    return get_user_model().objects.get(username="reviewer")


def test_the_demo_reviewer_decides_and_publishes_but_manages_no_account(tmp_path):
    user = _ensure(tmp_path)
    assert user.is_staff and not user.is_superuser
    assert user.has_perm(REVIEW_PERMISSION) and user.has_perm(PUBLISH_PERMISSION)
    for permission in ("auth.change_user", "auth.add_user", "auth.change_group", "auth.delete_user"):
        assert not user.has_perm(permission), permission
    password = (tmp_path / "reviewer_password").read_text().strip()
    assert user.check_password(password)
    assert (tmp_path / "reviewer_password").stat().st_mode & 0o077 == 0


def test_running_again_keeps_the_password_and_takes_back_superuser_rights(tmp_path):
    first = _ensure(tmp_path)
    first.is_superuser = True  # as an earlier version of the command made it
    first.save()
    again = _ensure(tmp_path)
    assert not again.is_superuser
    assert again.check_password((tmp_path / "reviewer_password").read_text().strip())
    assert again.groups.count() == 2
