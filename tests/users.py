"""The one builder of staff accounts for tests."""

from django.contrib.auth.models import Group, Permission, User

PASSWORD = "a-long-test-password"  # noqa: S105  (a test account's password)


def staff(username: str, *permissions: str, groups: tuple[Group, ...] = (), password: str = PASSWORD) -> User:
    """A staff member with these permission codenames and groups, fetched fresh (permissions are cached
    per instance)."""
    user = User.objects.create_user(username=username, password=password, is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    user.groups.add(*groups)
    return User.objects.get(pk=user.pk)
