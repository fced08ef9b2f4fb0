"""Benchmark of ``publish_release``: a blocklist of 100,000 entries, published three times.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_publishbench .venv/bin/python bench/publish.py

Fills the blocklist with N entries (every one with an image sha256; half with pHash and PDQ), then times:
1. the first release (a snapshot and a delta of N entries, both tiers, signed);
2. a release after 1% of the entries changed (1% new holds, 0.5% released);
3. a release with nothing changed (the schedule's re-signing; the snapshot file is reused).
Files go to a temporary directory through the file-system storage. The database is migrated first.

It empties the blocklist tables of the database it runs on, so it refuses a database whose name has no "bench".
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/optout_publishbench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from optout.blocklist import (  # noqa: E402
    holds,  # noqa: E402
    releases,
    signing,
)
from optout.imaging import hashbits  # noqa: E402
from optout.models import BlocklistEntry, BlocklistHold, FeedAccess, Release  # noqa: E402


def fill(entries: int, rng: random.Random) -> None:
    now = timezone.now()
    BlocklistHold.objects.all().delete()
    FeedAccess.objects.all().delete()
    with connection.cursor() as cursor:
        # Releases point at each other (PROTECT): empty the table in one statement.
        cursor.execute(f"DELETE FROM {Release._meta.db_table}")
    BlocklistEntry.objects.all().delete()
    batch = []
    for i in range(entries):
        full = i % 2 == 0
        batch.append(
            BlocklistEntry(
                url_sha256=f"{rng.getrandbits(256):064x}",
                sha256=f"{rng.getrandbits(256):064x}",
                phash=hashbits.to_signed64(rng.getrandbits(64)) if full else None,
                pdq=f"{rng.getrandbits(256):064x}" if full else "",
                pdq_quality=rng.randint(50, 100) if full else None,
                blocked=True,
                dirty=True,
                created_at=now,
                changed_at=now,
            )
        )
    entries_made = BlocklistEntry.objects.bulk_create(batch, batch_size=5000)
    BlocklistHold.objects.bulk_create(
        [BlocklistHold(entry=entry, holder=f"bench:{entry.pk}", created_at=now) for entry in entries_made],
        batch_size=5000,
    )


def timed(label: str, storage, key) -> None:
    started = time.perf_counter()
    release = releases.publish_release(storage=storage, signing_key=key)
    elapsed = time.perf_counter() - started
    public = release.tiers["public"]["snapshot"]
    partner = release.tiers["partner"]["snapshot"]
    print(
        f"{label}: release {release.version} in {elapsed:.2f} s — {release.entries:,} entries, "
        f"+{release.added:,} -{release.removed:,}; snapshot public {public['bytes'] / 1e6:.1f} MB, "
        f"partner {partner['bytes'] / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    database = connection.settings_dict["NAME"]
    if "bench" not in str(database):
        sys.exit(f"refusing to run on {connection.vendor} database {database!r}: it empties the blocklist")
    call_command("migrate", verbosity=0)
    rng = random.Random(6)
    started = time.perf_counter()
    fill(args.entries, rng)
    print(f"{connection.vendor}: filled {args.entries:,} entries in {time.perf_counter() - started:.1f} s")
    key = signing.generate()
    with tempfile.TemporaryDirectory() as tmp:
        storage = FileSystemStorage(location=tmp)
        timed("first release", storage, key)
        changes = args.entries // 100
        for i in range(changes):
            holds.hold(holder=f"bench:new:{i}", url_sha256=f"{rng.getrandbits(256):064x}", image_sha256="ab" * 32)
        for holder in (
            BlocklistHold.objects.filter(holder__startswith="bench:")
            .exclude(holder__startswith="bench:new")
            .values_list("holder", flat=True)[: changes // 2]
        ):
            holds.release_hold(holder=holder)
        timed("after 1% changed", storage, key)
        timed("nothing changed (re-sign)", storage, key)


if __name__ == "__main__":
    main()
