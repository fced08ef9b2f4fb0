"""``manage.py import_dataset NAME FILE...``: bulk-import URL lists into the dataset index.

The work is done by ``optout.index.importer.import_files``; see its module docstring for the rules (bad rows,
duplicates, PDQ quality, resuming an interrupted import by running the same command again).
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from optout.index.importer import DEFAULT_BATCH_SIZE, FORMATS, Columns, DatasetImportError, import_files


class Command(BaseCommand):
    help = (
        "Import dataset files (Parquet, CSV or JSON Lines, optionally gzipped) into the dataset index. "
        "Idempotent: rows whose canonical URL is already in the dataset are skipped, so an interrupted "
        "import is resumed by running the same command again."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Dataset name (a slug); created if missing.")
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--release", help="Release of the dataset, e.g. 2022-03.")
        parser.add_argument("--description")
        parser.add_argument("--url-column", default="url")
        parser.add_argument("--phash-column", help="pHash as 16 hex digits.")
        parser.add_argument(
            "--pdq-column", help="PDQ as 64 hex digits; without --pdq-quality-column its quality is unknown."
        )
        parser.add_argument("--pdq-quality-column", help="PDQ quality 0-100; PDQ below 50 is not stored.")
        parser.add_argument("--sha256-column", help="sha256 of the image bytes, 64 hex digits (img2dataset: sha256).")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument("--format", dest="file_format", choices=FORMATS, default="auto")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (none unless on a TTY).")

    def handle(self, *args, **options):
        if options["pdq_quality_column"] and not options["pdq_column"]:
            raise CommandError("--pdq-quality-column needs --pdq-column")
        columns = Columns(
            url=options["url_column"],
            phash=options["phash_column"],
            pdq=options["pdq_column"],
            pdq_quality=options["pdq_quality_column"],
            sha256=options["sha256_column"],
        )
        try:
            summary = import_files(
                options["name"],
                options["files"],
                columns=columns,
                release=options["release"],
                description=options["description"],
                batch_size=options["batch_size"],
                file_format=options["file_format"],
                progress=not options["no_progress"] and sys.stderr.isatty(),
            )
        except DatasetImportError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(summary.report())
