"""The blocklist: one entry per canonical URL, blocked while an approved item holds it.

The reviewer workflow (``requests_app``) calls ``hold`` when it approves an item
and ``release_hold`` when a request is withdrawn or a decision reversed; it never
writes these models itself. A holder is an opaque string naming the item
(``"removal-item:123"``), so this module knows nothing about removal requests.

Both functions lock the ``BlocklistState`` row first, as ``publish_release``
does: a release therefore reads the blocklist with no write half-done, and a
change made while it is being built waits and lands in the next release.
Changed entries are marked ``dirty``; the next release turns them into delta
lines (``add`` for a blocked entry, ``remove`` for one that was published and is
no longer held) and clears the mark.
"""

import logging

from django.db import transaction
from django.utils import timezone

from optout.imaging import hashbits
from optout.models import BlocklistEntry, BlocklistHold, BlocklistState

log = logging.getLogger(__name__)

__all__ = ["HoldConflict", "held_in", "hold", "lock_blocklist", "newest_hold", "release_hold"]


class HoldConflict(ValueError):
    """The holder already holds another entry (a holder names one item, and an item one URL)."""


def newest_hold() -> int:
    """The id of the newest hold (0 if none). Taken by the publisher under the lock: the holds a release carries
    are then those with an id up to it that still exist (a hold made later waits for the lock, then gets a
    larger id)."""
    return BlocklistHold.objects.order_by("-id").values_list("id", flat=True).first() or 0


def held_in(holders, *, newest: int) -> set[str]:
    """Those of ``holders`` whose holds a release whose ``newest_hold`` was ``newest`` carries."""
    return set(BlocklistHold.objects.filter(holder__in=holders, id__lte=newest).values_list("holder", flat=True))


def lock_blocklist() -> None:
    """Take the blocklist lock until the end of the current transaction."""
    BlocklistState.objects.get_or_create(pk=1)
    BlocklistState.objects.select_for_update().get(pk=1)


@transaction.atomic
def hold(
    *,
    holder: str,
    url_sha256: str,
    image_sha256: str = "",
    phash: int | None = None,
    pdq: int | None = None,
    pdq_quality: int | None = None,
) -> BlocklistEntry:
    """Block ``url_sha256`` on behalf of ``holder``, creating its entry if needed; returns the entry.

    Idempotent per holder. Hashes the entry did not know yet are filled in (a
    known hash is kept: the first approved copy defines the entry). Raises
    ``HoldConflict`` if ``holder`` already holds another URL, and
    ``hashbits.BadHash`` for a malformed hash.
    """
    url_sha256 = hashbits.sha256_from_hex(url_sha256)
    image_sha256 = hashbits.sha256_from_hex(image_sha256) if image_sha256 else ""
    if phash is not None and not 0 <= phash < 1 << 64:
        raise hashbits.BadHash("a pHash is an unsigned 64-bit integer")
    if pdq is not None and not 0 <= pdq < 1 << 256:
        raise hashbits.BadHash("a PDQ hash is an unsigned 256-bit integer")
    if pdq_quality is not None and not 0 <= pdq_quality <= 100:
        raise hashbits.BadHash("a PDQ quality is between 0 and 100")
    now = timezone.now()
    lock_blocklist()
    entry, _ = BlocklistEntry.objects.get_or_create(
        url_sha256=url_sha256, defaults={"created_at": now, "changed_at": now}
    )
    existing = BlocklistHold.objects.filter(holder=holder).select_related("entry").first()
    if existing is not None and existing.entry_id != entry.pk:
        raise HoldConflict(f"{holder} already holds {existing.entry.url_sha256}")
    if existing is None:
        BlocklistHold.objects.create(entry=entry, holder=holder, created_at=now)

    changed = {}
    if not entry.blocked:
        changed["blocked"] = True
    if image_sha256 and not entry.sha256:
        changed["sha256"] = image_sha256
    if phash is not None and entry.phash is None:
        changed["phash"] = hashbits.to_signed64(phash)
    if pdq is not None and not entry.pdq:
        changed["pdq"] = hashbits.pdq_to_hex(pdq)
        changed["pdq_quality"] = pdq_quality
    if changed:
        for field, value in changed.items():
            setattr(entry, field, value)
        entry.dirty = True
        entry.changed_at = now
        entry.save(update_fields=[*changed, "dirty", "changed_at"])
    return entry


@transaction.atomic
def release_hold(*, holder: str) -> None:
    """Remove ``holder``'s hold; an entry left with none is unblocked (a tombstone in the next delta
    if a release carried it). Idempotent: an unknown holder is a no-op."""
    lock_blocklist()
    existing = BlocklistHold.objects.filter(holder=holder).first()
    if existing is None:
        return
    entry_id = existing.entry_id
    existing.delete()
    if not BlocklistHold.objects.filter(entry_id=entry_id).exists():
        BlocklistEntry.objects.filter(pk=entry_id, blocked=True).update(
            blocked=False, dirty=True, changed_at=timezone.now()
        )
