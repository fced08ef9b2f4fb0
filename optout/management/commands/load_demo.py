from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from optout import imaging
from optout.client.canonical import url_sha256
from optout.index import demo, hashing
from optout.models import Dataset, DatasetRow


class Command(BaseCommand):
    help = (
        "Create the demo dataset (scikit-image's sample photographs and transformed copies, served by this app "
        "at /demo/images/) with its signals. Does nothing if it exists, unless --reset."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="Delete and recreate the demo dataset's rows.")

    @transaction.atomic
    def handle(self, *args, reset: bool, **options):
        dataset, created = Dataset.objects.get_or_create(
            name=demo.DATASET_NAME,
            defaults={
                "release": "1",
                "description": "Sample photographs shipped with scikit-image, and resized, recompressed, cropped, "
                "mirrored, framed and captioned copies of them, served by this app.",
            },
        )
        base = settings.OPTOUT_PUBLIC_URL
        first = dataset.rows.order_by("id").values_list("url", flat=True).first()
        if not created and not reset and first is not None and not first.startswith(f"{base}/"):
            # Served on another address now (`PORT=8001 make run`): the rows must point to this one.
            self.stdout.write(f"The demo dataset points to another address ({first}); loading it again for {base}.")
            reset = True
        if not created and not reset:
            self.stdout.write(f"The demo dataset is loaded already ({dataset.rows.count()} rows).")
            return
        dataset.rows.all().delete()
        descriptor = hashing.our_descriptor()
        rows = []
        for name in demo.names():
            url = f"{base}/demo/images/{name}.jpg"
            computed = imaging.compute_signals(
                demo.image_bytes(name),
                max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES,
                max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS,
            )
            rows.append(
                DatasetRow(
                    dataset=dataset,
                    url=url,
                    url_sha256=url_sha256(url),
                    descriptor=descriptor,
                    **hashing.row_signal_fields(computed),
                    hashed_at=dataset.created_at,
                )
            )
        DatasetRow.objects.bulk_create(rows)
        Dataset.objects.filter(pk=dataset.pk).update(row_count=len(rows))  # every row was replaced
        self.stdout.write(f"Loaded the demo dataset: {len(rows)} rows at {base}/demo/ .")
