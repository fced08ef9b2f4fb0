import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from optout.index import hashing
from optout.models import Dataset
from optout.tasks import hash_rows


class Command(BaseCommand):
    help = (
        "Fill in the image signals of a dataset's rows by fetching their URLs through the SSRF-safe fetcher. "
        "Queues Celery tasks in batches; rows already hashed (or given up on) are skipped, so it can be re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The dataset's name.")
        parser.add_argument("--batch-size", type=int, default=200, help="Rows per task (default 200).")
        parser.add_argument("--limit", type=int, default=None, help="Queue at most this many rows.")
        parser.add_argument(
            "--sync", action="store_true", help="Hash in this process instead of queueing tasks (small datasets)."
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, name, batch_size, limit, sync, no_progress, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        dataset = Dataset.objects.filter(name=name).first()
        if dataset is None:
            raise CommandError(f"There is no dataset named {name!r}.")
        ids = hashing.rows_to_hash(dataset.pk).order_by("id").values_list("id", flat=True)
        total = ids.count() if limit is None else min(limit, ids.count())
        if total == 0:
            self.stdout.write(f"Every row of {name} is hashed already.")
            return
        progress = tqdm(total=total, unit="row", disable=no_progress or not sys.stderr.isatty(), file=sys.stderr)
        queued = 0
        last_id = 0
        # Walk by primary key, a batch at a time: memory stays flat however large the dataset.
        while queued < total:
            batch = list(ids.filter(id__gt=last_id)[: min(batch_size, total - queued)])
            if not batch:
                break
            last_id = batch[-1]
            if sync:
                hash_rows(batch)
            else:
                transaction.on_commit(lambda batch=batch: hash_rows.delay(batch))
            queued += len(batch)
            progress.update(len(batch))
        progress.close()
        verb = "Hashed" if sync else "Queued"
        self.stdout.write(f"{verb} {queued} rows of {name} in batches of {batch_size}.")
