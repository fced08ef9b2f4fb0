import getpass
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from optout.blocklist import signing


class Command(BaseCommand):
    help = (
        "Generate a minisign key pair for signing blocklist releases. The secret key goes to OPTOUT_SIGNING_KEY_FILE "
        "(or --output), mode 0600, optionally encrypted with a password; the public key beside it with .pub. "
        "Both are in minisign's own formats, so `minisign -S -s <key>` can sign with it too. "
        "Never writes into the repository or the database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", help="Secret key file (default: OPTOUT_SIGNING_KEY_FILE).")
        parser.add_argument("--password-file", help="Encrypt the key with the password in this file.")
        parser.add_argument("--ask-password", action="store_true", help="Encrypt the key with a password typed twice.")
        parser.add_argument("--force", action="store_true", help="Replace an existing key file.")
        parser.add_argument("--if-missing", action="store_true", help="Do nothing if the key file exists.")

    def handle(self, *args, output, password_file, ask_password, force, if_missing, **options):
        path = Path(output or settings.OPTOUT_SIGNING_KEY_FILE).resolve()
        repository = Path(settings.BASE_DIR).resolve()
        var_dir = Path(settings.VAR_DIR).resolve()
        if path.is_relative_to(repository) and not path.is_relative_to(var_dir):
            # var/ is git-ignored; anything else under the checkout could end up committed.
            raise CommandError(f"Refusing to write a secret key inside the repository ({path}); use var/ or elsewhere.")
        if path.exists():
            if if_missing:
                self.stdout.write(f"Signing key {path} exists; left as it is.")
                return
            if not force:
                raise CommandError(f"{path} exists. Use --force to replace it (publish the new public key first!).")
        password = None
        if password_file:
            password = Path(password_file).read_bytes().rstrip(b"\r\n")
        elif ask_password:
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Password (again): "):
                raise CommandError("The passwords differ.")
            password = first.encode()
        if password is not None and not password:
            raise CommandError("The password is empty.")

        key = signing.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key.to_file(password=password))
        os.replace(temporary, path)
        public_path = path.with_name(path.name.removesuffix(".key") + ".pub")
        public_path.write_text(key.public_key.to_file(), encoding="ascii")
        self.stdout.write(f"Secret key: {path}{' (encrypted)' if password else ''}")
        self.stdout.write(f"Public key: {public_path}")
        self.stdout.write(f"Key id {key.public_key.key_id_hex}: {key.public_key.to_base64()}")
