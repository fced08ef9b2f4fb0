import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

# The groups the migrations create: deciding requests, and publishing releases (and reversals).
GROUPS = ("reviewer", "publisher")


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo reviewer account and print its login. It is staff in the reviewer and "
        "publisher groups, not a superuser: it can decide requests and publish, not manage accounts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="reviewer")
        parser.add_argument(
            "--password-file",
            type=Path,
            required=True,
            help="Where the generated password is kept (created with mode 0600 on first run).",
        )

    def handle(self, *args, username: str, password_file: Path, **options):
        if password_file.is_file():
            password = password_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.touch(mode=0o600)
            password_file.write_text(password + "\n")
        groups = list(Group.objects.filter(name__in=GROUPS))
        if len(groups) != len(GROUPS):
            raise CommandError(f"The groups {', '.join(GROUPS)} are missing: run `manage.py migrate` first.")
        user, created = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = False
        user.set_password(password)
        user.save()
        user.groups.add(*groups)
        verb = "Created" if created else "Reset"
        self.stdout.write(
            f"{verb} the reviewer login: user {username!r}, password {password!r} (kept in {password_file})."
        )
