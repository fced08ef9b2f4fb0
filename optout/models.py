from django.db import models

from optout.fetch import errors as fetch_errors


class FetchVerdict(models.TextChoices):
    """Why a fetch gave no picture: the codes of ``optout.fetch``'s errors, for dataset rows and request items."""

    UNREACHABLE = fetch_errors.UNREACHABLE, "unreachable"
    NOT_AN_IMAGE = fetch_errors.NOT_AN_IMAGE, "not an image"
    REFUSED = fetch_errors.REFUSED, "refused (blocked address)"


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran the periodic heartbeat task.

    ``/healthz`` reports its age, so an operator sees a stalled worker or beat
    before requesters do.
    """

    worker = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


# --- The dataset index --------------------------------------------------------------
#
# Multi-index hashing: each hash is cut into chunks of 21-22 bits, stored as
# generated columns with their own B-tree index. Two hashes within Hamming
# distance r of each other agree to within floor(r / m) bits on at least one of
# their m chunks (pigeonhole), so the matcher looks those chunk values up
# exactly, then verifies the few candidates. The database computes the chunks
# itself, so a row is matchable as soon as it commits, whichever way it was
# written (ORM, COPY, raw SQL).
#
# Hashes are stored as signed 64-bit integers (two's complement of the unsigned
# value): pHash in one column, PDQ's 256 bits in four, most significant first.


class HexField(models.CharField):
    """Lower-case hex digests, compared byte-wise.

    On PostgreSQL the column gets the "C" collation: a locale-aware collation
    makes every index insertion and lookup pay for strcoll, for nothing. SQLite
    compares bytes already (and has no collation named "C").
    """

    def db_parameters(self, connection):
        parameters = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            parameters["collation"] = "C"
        return parameters


PHASH_CHUNKS = ((42, 22), (21, 21), (0, 21))  # (shift, bits) of each chunk of a 64-bit word


class UrlHost(models.Func):
    """The lower-cased host (with any port) of a URL as a dataset gives it: what lies between ``://`` and the next ``/``.

    An expression index on it lets the decoy draw pick rows of one host in one dataset by an index seek.
    The two spellings give the same result for every URL with ``://`` in it.
    """

    output_field = models.TextField()
    postgres_template = "lower(split_part(%(expressions)s, '/', 3))"  # raw SQL spells it from this too

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template=self.postgres_template, **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        rest = "substr(%(expressions)s, instr(%(expressions)s, '://') + 3)"
        template = f"lower(substr({rest}, 1, instr({rest} || '/', '/') - 1))"
        return self.as_sql(compiler, connection, template=template, **extra_context)


def _chunk(word: str, shift: int, bits: int) -> models.GeneratedField:
    expression = (
        models.F(word).bitrightshift(shift).bitand((1 << bits) - 1) if shift else models.F(word).bitand((1 << bits) - 1)
    )
    return models.GeneratedField(expression=expression, output_field=models.IntegerField(), db_persist=True)


class HashDescriptor(models.Model):
    """Which library, version and parameters produced a set of stored hashes."""

    key = models.CharField(max_length=200, unique=True)
    details = models.JSONField()

    def __str__(self) -> str:
        return self.key


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True, help_text="Short name, e.g. laion-5b.")
    release = models.CharField(max_length=100, blank=True, help_text="The release of the dataset, e.g. 2022-03.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Kept by whatever adds rows (the importer, in the transaction that makes them visible), so that the public
    # manifest's share of decoys needs no count of an index that may hold billions of rows.
    row_count = models.PositiveBigIntegerField(default=0, editable=False, help_text="Rows in the index.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        # "laion-5b, 2022-03": a reader sees the name and the release, not "laion 1".
        return f"{self.name}, {self.release}" if self.release else self.name


# A dataset row's URL is at most this long: longer "URLs" in scraped lists are data: URIs or junk, not
# fetchable images. Every blocklist entry comes from a row or a request item, so lookups need no more.
MAX_ROW_URL_LENGTH = 4096


class DatasetRow(models.Model):
    class FetchError(models.TextChoices):
        NONE = "", "none"
        UNREACHABLE = FetchVerdict.UNREACHABLE.value, FetchVerdict.UNREACHABLE.label
        NOT_AN_IMAGE = FetchVerdict.NOT_AN_IMAGE.value, FetchVerdict.NOT_AN_IMAGE.label
        REFUSED = FetchVerdict.REFUSED.value, FetchVerdict.REFUSED.label

    id = models.BigAutoField(primary_key=True)
    # Indexed by the (url_sha256, dataset) and (dataset, hashed_at) indexes below; a third one
    # would only slow bulk imports down.
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="rows", db_index=False)
    url = models.TextField(help_text="The URL as the dataset gives it.")
    url_sha256 = HexField(max_length=64, help_text="sha256 (hex) of the canonical URL.")
    sha256 = HexField(max_length=64, blank=True, help_text="sha256 (hex) of the image bytes.")
    phash = models.BigIntegerField(null=True, blank=True)
    pdq_0 = models.BigIntegerField(null=True, blank=True)
    pdq_1 = models.BigIntegerField(null=True, blank=True)
    pdq_2 = models.BigIntegerField(null=True, blank=True)
    pdq_3 = models.BigIntegerField(null=True, blank=True)
    pdq_quality = models.SmallIntegerField(null=True, blank=True)
    descriptor = models.ForeignKey(
        HashDescriptor, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    hashed_at = models.DateTimeField(null=True, blank=True, help_text="When the signals were computed from the URL.")
    hash_attempts = models.SmallIntegerField(default=0)
    fetch_error = models.CharField(max_length=20, choices=FetchError.choices, blank=True)

    ph_c0 = _chunk("phash", *PHASH_CHUNKS[0])
    ph_c1 = _chunk("phash", *PHASH_CHUNKS[1])
    ph_c2 = _chunk("phash", *PHASH_CHUNKS[2])
    pdq_c0 = _chunk("pdq_0", *PHASH_CHUNKS[0])
    pdq_c1 = _chunk("pdq_0", *PHASH_CHUNKS[1])
    pdq_c2 = _chunk("pdq_0", *PHASH_CHUNKS[2])
    pdq_c3 = _chunk("pdq_1", *PHASH_CHUNKS[0])
    pdq_c4 = _chunk("pdq_1", *PHASH_CHUNKS[1])
    pdq_c5 = _chunk("pdq_1", *PHASH_CHUNKS[2])
    pdq_c6 = _chunk("pdq_2", *PHASH_CHUNKS[0])
    pdq_c7 = _chunk("pdq_2", *PHASH_CHUNKS[1])
    pdq_c8 = _chunk("pdq_2", *PHASH_CHUNKS[2])
    pdq_c9 = _chunk("pdq_3", *PHASH_CHUNKS[0])
    pdq_c10 = _chunk("pdq_3", *PHASH_CHUNKS[1])
    pdq_c11 = _chunk("pdq_3", *PHASH_CHUNKS[2])

    class Meta:
        constraints = [
            # url_sha256 first: the same index answers "is this URL in any dataset?".
            models.UniqueConstraint(fields=["url_sha256", "dataset"], name="datasetrow_unique_url_per_dataset"),
            models.CheckConstraint(
                condition=models.Q(pdq_quality__isnull=True) | models.Q(pdq_quality__gte=0, pdq_quality__lte=100),
                name="datasetrow_pdq_quality_range",
            ),
        ]
        indexes = [
            models.Index(fields=["sha256"], name="datasetrow_sha256", condition=~models.Q(sha256="")),
            models.Index(fields=["dataset", "hashed_at"], name="datasetrow_hash_queue"),
            # The decoy draw (optout/blocklist/decoys.py): rows of one host of one dataset, in url_sha256 order.
            models.Index(models.F("dataset"), UrlHost("url"), models.F("url_sha256"), name="datasetrow_host"),
            # The chunk indexes carry the full hash so PostgreSQL can verify candidates from the index alone.
            # Partial: rows without that hash (most of a freshly imported dataset) cost nothing, and
            # `chunk = value` implies `chunk IS NOT NULL`, so the planner still uses them.
            *[
                models.Index(
                    fields=[f"ph_c{i}", "phash"],
                    name=f"datasetrow_ph_c{i}",
                    condition=models.Q(**{f"ph_c{i}__isnull": False}),
                )
                for i in range(3)
            ],
            *[
                models.Index(
                    fields=[f"pdq_c{i}"],
                    name=f"datasetrow_pdq_c{i}",
                    condition=models.Q(**{f"pdq_c{i}__isnull": False}),
                )
                for i in range(12)
            ],
        ]

    def __str__(self) -> str:
        return self.url


# --- The blocklist, its releases and the partner feed -------------------------------------
#
# One entry per canonical URL (its sha256), blocked while at least one hold is
# on it. `hold`/`release_hold` in optout/blocklist/holds.py are the only writers of
# entries and holds; optout/blocklist/releases.py is the only writer of releases. See
# those modules for the locking that keeps a release consistent.


class BlocklistState(models.Model):
    """A single row that blocklist writers and publishers lock, so a release sees one consistent blocklist."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="blockliststate_singleton")]

    def __str__(self) -> str:
        return "blocklist state"


class BlocklistEntry(models.Model):
    url_sha256 = HexField(max_length=64, unique=True, help_text="sha256 (hex) of the canonical URL.")
    sha256 = HexField(max_length=64, blank=True, help_text="sha256 (hex) of the image bytes, when known.")
    phash = models.BigIntegerField(null=True, blank=True, help_text="pHash as a signed 64-bit integer.")
    pdq = HexField(max_length=64, blank=True, help_text="PDQ (64 hex digits), when known.")
    pdq_quality = models.SmallIntegerField(null=True, blank=True)
    blocked = models.BooleanField(default=False, help_text="At least one approved item holds it.")
    published = models.BooleanField(default=False, help_text="In the snapshot of the latest release.")
    # Changed since the latest release (blocked or hashes): the next delta looks at these only.
    dirty = models.BooleanField(default=False)
    # The public tier hides the key among decoys (PublicDecoy), drawn once, the first time it is published.
    decoys_drawn = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    changed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "blocklist entries"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pdq_quality__isnull=True) | models.Q(pdq_quality__gte=0, pdq_quality__lte=100),
                name="blocklistentry_pdq_quality_range",
            ),
        ]
        indexes = [
            models.Index(fields=["url_sha256"], name="blocklistentry_blocked", condition=models.Q(blocked=True)),
            models.Index(fields=["url_sha256"], name="blocklistentry_dirty", condition=models.Q(dirty=True)),
            # Entries whose decoys the next release draws: a few, found without reading the whole blocklist.
            models.Index(
                fields=["id"], name="blocklistentry_undrawn", condition=models.Q(blocked=True, decoys_drawn=False)
            ),
        ]

    def __str__(self) -> str:
        return self.url_sha256


class PublicDecoy(models.Model):
    """A key published in the public tier beside an entry's own, while the entry is published.

    Drawn once per entry (``optout.blocklist.decoys``): real rows of a dataset that holds the
    entry's URL (``dataset`` set), or for a URL in no dataset, keys of no URL at all (``dataset``
    null). Never redrawn, so releases never reshuffle them; they come and go with their entry.
    """

    # No foreign key constraints in the database: a release draws k rows per entry (9 million at a million
    # entries) and their deferred checks at commit took longer than drawing them. Entries are never deleted,
    # and Django's collector still cascades (entry) and nulls (dataset) deletions made through the ORM.
    # Three indexes, each a cost on every decoy drawn: the key, (entry, key) for groups, and the primary key.
    # The entry's own index would repeat (entry, key); the dataset's serves only the rare deletion of one.
    entry = models.ForeignKey(
        BlocklistEntry, on_delete=models.CASCADE, related_name="decoys", db_constraint=False, db_index=False
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False, db_index=False
    )
    url_sha256 = HexField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "url_sha256"], name="publicdecoy_unique_per_entry")]
        # A plain index: the one db_index gives a text column on PostgreSQL comes with a second, for LIKE.
        indexes = [models.Index(fields=["url_sha256"], name="publicdecoy_key")]

    def __str__(self) -> str:
        return f"{self.url_sha256} for {self.entry_id}"


class BlocklistHold(models.Model):
    """One approved item's claim on an entry; ``holder`` is an opaque name such as ``removal-item:123``."""

    entry = models.ForeignKey(BlocklistEntry, on_delete=models.PROTECT, related_name="holds")
    holder = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.holder} on {self.entry_id}"


class Release(models.Model):
    """An immutable, signed release of the blocklist (both tiers share its number).

    The database keeps the numbers contiguous: ``previous`` points to the release
    numbered one less (a check constraint), at most one release has a given
    previous (unique), and only release 1 has none. Two publishers can therefore
    neither both create version N nor skip one, whatever the code above does.
    """

    version = models.PositiveIntegerField(unique=True)
    previous = models.OneToOneField(
        "self", to_field="version", on_delete=models.PROTECT, null=True, blank=True, related_name="next"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    entries = models.PositiveIntegerField(help_text="Entries in the snapshot.")
    added = models.PositiveIntegerField(help_text="Entries added or updated since the previous release.")
    removed = models.PositiveIntegerField(help_text="Tombstones since the previous release.")
    state_sha256 = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16, help_text="The minisign key id that signed the manifests.")
    public_key = models.CharField(max_length=64, help_text="That key, as minisign's base64 string.")
    # Per tier: {"manifest_sha256": ..., "files": {name: {"sha256": ..., "bytes": ...}}}.
    tiers = models.JSONField()

    class Meta:
        ordering = ["-version"]
        permissions = [("publish_blocklist", "Can publish blocklist releases")]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(version=1, previous__isnull=True)
                    # IS NOT NULL spelled out: a CHECK that evaluates to NULL passes.
                    | models.Q(previous__isnull=False, previous=models.F("version") - 1)
                ),
                name="release_previous_is_version_minus_one",
            ),
        ]

    def __str__(self) -> str:
        return f"release {self.version}"


class FeedConsumer(models.Model):
    """A dataset builder allowed to pull the partner tier with a bearer token."""

    name = models.CharField(max_length=200, unique=True)
    contact = models.CharField(max_length=300, help_text="Who to reach about this consumer (e-mail or URL).")
    # HMAC-SHA256 of the token under a key derived from SECRET_KEY; the token itself is shown once.
    token_hmac = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class FeedAccess(models.Model):
    """One partner-tier request, for the access log."""

    consumer = models.ForeignKey(FeedConsumer, on_delete=models.CASCADE, related_name="accesses")
    path = models.CharField(max_length=200)
    status = models.PositiveSmallIntegerField()
    at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "feed accesses"
        indexes = [models.Index(fields=["consumer", "-at"], name="feedaccess_consumer_at")]

    def __str__(self) -> str:
        return f"{self.consumer_id} {self.path} {self.status}"
