"""Removal requests, their items, reference signals and the append-only event log.

Only the transition functions in ``requests_app/services/`` (and ``aftercare``, ``monitoring``) change a state.
"""

from django.conf import settings
from django.db import models

from optout.models import Dataset, DatasetRow, FetchVerdict


class RemovalState(models.TextChoices):
    RECEIVED = "received", "received"
    CHECKING = "checking", "checking"
    IN_REVIEW = "in_review", "in review"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    PUBLISHED = "published", "published"
    APPEALED = "appealed", "appealed"
    REVERSED = "reversed", "reversed"
    WITHDRAWN = "withdrawn", "withdrawn"


# The one map of allowed transitions (tests/requests_app/test_transitions.py
# checks every pair). `withdrawn` is reachable from every state but itself;
# `in_review -> checking` lets a reviewer ask for verification again.
# After a decision (approved, published, rejected) a case goes back to
# `checking` when the requester adds links, and to `in_review` when monitoring
# finds copies later; what was decided stays decided (items carry `decided_at`).
# A rejected case may be `appealed` once; a reviewer with the publish permission
# may reverse an approval (`reversed`: its holds are released).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RemovalState.RECEIVED: frozenset({RemovalState.CHECKING, RemovalState.WITHDRAWN}),
    RemovalState.CHECKING: frozenset({RemovalState.IN_REVIEW, RemovalState.WITHDRAWN}),
    RemovalState.IN_REVIEW: frozenset(
        {RemovalState.APPROVED, RemovalState.REJECTED, RemovalState.CHECKING, RemovalState.WITHDRAWN}
    ),
    RemovalState.APPROVED: frozenset(
        {
            RemovalState.PUBLISHED,
            RemovalState.IN_REVIEW,
            RemovalState.CHECKING,
            RemovalState.REVERSED,
            RemovalState.WITHDRAWN,
        }
    ),
    RemovalState.REJECTED: frozenset(
        {RemovalState.APPEALED, RemovalState.IN_REVIEW, RemovalState.CHECKING, RemovalState.WITHDRAWN}
    ),
    RemovalState.PUBLISHED: frozenset(
        {RemovalState.IN_REVIEW, RemovalState.CHECKING, RemovalState.REVERSED, RemovalState.WITHDRAWN}
    ),
    RemovalState.APPEALED: frozenset({RemovalState.APPROVED, RemovalState.REJECTED, RemovalState.WITHDRAWN}),
    RemovalState.REVERSED: frozenset({RemovalState.WITHDRAWN}),
    RemovalState.WITHDRAWN: frozenset(),
}

# States in which a case is over: its contact e-mail is deleted on entry.
CLOSED_STATES = frozenset(
    {RemovalState.REJECTED, RemovalState.PUBLISHED, RemovalState.REVERSED, RemovalState.WITHDRAWN}
)
# States a case reaches by a reviewer's decision; from them it can be re-opened.
DECIDED_STATES = frozenset({RemovalState.APPROVED, RemovalState.PUBLISHED, RemovalState.REJECTED})
# States in which nothing more happens to a case: no monitoring, no added links.
ENDED_STATES = frozenset({RemovalState.REVERSED, RemovalState.WITHDRAWN})


class ItemState(models.TextChoices):
    PENDING = "pending", "pending"
    MATCH_STRONG = "match_strong", "strong match"
    MATCH_WEAK = "match_weak", "weak match"
    NO_MATCH = "no_match", "no match"
    UNREACHABLE = FetchVerdict.UNREACHABLE.value, FetchVerdict.UNREACHABLE.label
    NOT_AN_IMAGE = FetchVerdict.NOT_AN_IMAGE.value, FetchVerdict.NOT_AN_IMAGE.label
    REFUSED = FetchVerdict.REFUSED.value, FetchVerdict.REFUSED.label


class RejectReason(models.TextChoices):
    NO_MATCH = "no_match", "The pictures do not match"
    NOT_IN_DATASET = "not_in_dataset", "The links are not in any dataset we index"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence", "Not enough evidence that the requester holds the picture"
    PUBLIC_INTEREST = "public_interest", "The picture is not private (e.g. a widely published work)"
    ABUSE = "abuse", "The request looks like an abuse of the process"
    DUPLICATE = "duplicate", "Another request covers the same links"
    OTHER = "other", "Other (see the note)"


class ItemDecision(models.TextChoices):
    NONE = "", "follow the verdict"
    APPROVE = "approve", "block"
    REJECT = "reject", "do not block"


class SignalSource(models.TextChoices):
    """Who computed a reference picture's signals. Only the server's own hashing proves identical bytes."""

    UPLOAD = "upload", "hashed by the server from an upload"
    CLIENT = "client", "computed by the requester's device"


class RemovalRequest(models.Model):
    case = models.CharField(max_length=32, unique=True, help_text="The case reference the requester keeps.")
    # HMAC-SHA256 of the secret under SECRET_KEY (requests_app/cases.py); never the secret itself.
    secret_hmac = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=RemovalState.choices, default=RemovalState.RECEIVED, db_index=True)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, null=True, blank=True, help_text="Empty: every dataset."
    )
    contact_email = models.EmailField(blank=True, help_text="Optional; deleted when the case closes.")
    created_at = models.DateTimeField(db_index=True)
    state_changed_at = models.DateTimeField()
    # When verification must have finished; the sweeper re-queues cases past it.
    check_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    check_attempts = models.SmallIntegerField(default=0)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_reason = models.CharField(max_length=30, choices=RejectReason.choices, blank=True)
    decision_note = models.TextField(blank=True)
    # Set when a decided case comes back to review (copies found later, links added); the queue shows
    # these apart.
    reopened_at = models.DateTimeField(null=True, blank=True)
    appealed_at = models.DateTimeField(null=True, blank=True, help_text="A rejected case is appealed once.")
    appeal_note = models.TextField(blank=True)
    # Monitoring, by consent: until then new dataset rows are matched against the reference signals,
    # which are kept past the case's end only for this. Empty: no monitoring.
    monitor_until = models.DateTimeField(null=True, blank=True, db_index=True)
    monitor_email = models.EmailField(
        blank=True, help_text="Optional; only to say that copies were found; deleted when monitoring ends."
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_removalrequest", "Can decide removal requests")]

    def __str__(self) -> str:
        return self.case


class RemovalItem(models.Model):
    removal = models.ForeignKey(RemovalRequest, on_delete=models.CASCADE, related_name="items")
    url = models.TextField()
    url_sha256 = models.CharField(max_length=64, help_text="sha256 (hex) of the canonical URL.")
    # No database constraint: on PostgreSQL dataset rows live in a table partitioned by dataset, whose
    # `id` alone cannot carry the unique index a foreign key needs. Django still applies SET_NULL.
    dataset_row = models.ForeignKey(
        DatasetRow, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    found_by_system = models.BooleanField(default=False, help_text="Found in the index by the reference signals.")
    # Set on items that came after the case's first verification: links the requester added, copies
    # that monitoring found in new dataset rows.
    added_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=20, choices=ItemState.choices, default=ItemState.PENDING, db_index=True)
    # Evidence: the best comparison against the reference signals.
    phash_distance = models.SmallIntegerField(null=True, blank=True)
    pdq_distance = models.SmallIntegerField(null=True, blank=True)
    sha256_equal = models.BooleanField(
        null=True, blank=True, help_text="The sha256s are equal, perhaps only as claimed."
    )
    bytes_identical = models.BooleanField(default=False, help_text="Equal sha256s, both computed by the server.")
    hashes_inconsistent = models.BooleanField(
        default=False, help_text="A reference claims these bytes, but its perceptual hashes can't be of them."
    )
    # Who computed the reference signals this evidence compares against; blank when nothing was compared.
    reference_source = models.CharField(max_length=10, choices=SignalSource.choices, blank=True)
    # Signals of the image at the URL (hex), kept for the blocklist entry.
    image_sha256 = models.CharField(max_length=64, blank=True)
    image_phash = models.CharField(max_length=16, blank=True)
    image_pdq = models.CharField(max_length=64, blank=True)
    image_pdq_quality = models.SmallIntegerField(null=True, blank=True)
    # Which variants gave the best comparison (optout.imaging.variants names; "" the picture itself).
    reference_variant = models.CharField(max_length=40, blank=True)
    candidate_variant = models.CharField(max_length=40, blank=True)
    verify_attempts = models.SmallIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=200, blank=True, help_text="Why verification failed, for reviewers.")
    # The reviewer's call on this item; without one, approval blocks exactly the matching items.
    decision = models.CharField(max_length=10, choices=ItemDecision.choices, blank=True)
    blocked = models.BooleanField(default=False, help_text="Put on the blocklist when the request was approved.")
    # When a decision on the case settled this item; a later decision never changes it.
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["found_by_system", "id"]
        constraints = [
            models.UniqueConstraint(fields=["removal", "url_sha256"], name="removalitem_unique_url_per_removal"),
        ]

    def __str__(self) -> str:
        return f"{self.removal.case} item {self.pk}"


class ReferenceSignal(models.Model):
    """Signals of one reference image or of one of its variants. The image itself is never stored.

    ``image_index`` groups the signals of one reference image: the picture itself (``variant`` "")
    and its variants (mirrored, turned, cropped: ``optout.imaging.variants``), each under the
    descriptor it was computed with. Only the picture's own row carries the file's sha256.
    """

    Source = SignalSource

    removal = models.ForeignKey(RemovalRequest, on_delete=models.CASCADE, related_name="references")
    image_index = models.SmallIntegerField()
    source = models.CharField(max_length=10, choices=Source.choices)
    phash = models.CharField(max_length=16)
    pdq = models.CharField(max_length=64, blank=True)
    pdq_quality = models.SmallIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    descriptor_key = models.CharField(max_length=200)
    variant = models.CharField(max_length=40, blank=True, help_text="Empty: the picture itself.")

    class Meta:
        ordering = ["image_index", "id"]

    def __str__(self) -> str:
        return f"{self.removal.case} reference {self.image_index}"


class RequestEvent(models.Model):
    """One act on a removal request. Append-only: never edited, never deleted."""

    class Action(models.TextChoices):
        TRANSITION = "transition", "state change"
        CLAIM = "claim", "assignment"
        ITEM_DECISION = "item_decision", "decision on an item"
        ITEM_REVERSAL = "item_reversal", "reversal of an item's block"
        ITEMS_ADDED = "items_added", "items added"
        MONITORING = "monitoring", "monitoring"

    removal = models.ForeignKey(RemovalRequest, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor_label = models.CharField(max_length=150, help_text="requester, system, or the reviewer's user name.")
    from_state = models.CharField(max_length=20, choices=RemovalState.choices, blank=True)
    to_state = models.CharField(max_length=20, choices=RemovalState.choices)
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.TRANSITION)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.removal_id}: {self.from_state or '-'} -> {self.to_state}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("request events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("request events are append-only")


class MonitorMark(models.Model):
    """How far monitoring has matched one dataset's rows (its high-water marks).

    Rows gain signals two ways, each with its own mark: imported with hash columns
    (``hashed_at`` empty; matched in ``id`` order) and hashed by a worker
    (``hashed_at`` set; matched in ``(hashed_at, id)`` order). A mark moves in the
    same transaction as the items its rows produced, so a scan killed midway
    leaves it where it was.
    """

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="+")
    imported_until_id = models.BigIntegerField(default=0)
    hashed_until = models.DateTimeField(null=True, blank=True)
    hashed_until_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"monitoring mark of dataset {self.dataset_id}"
