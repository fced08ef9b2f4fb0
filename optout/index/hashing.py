"""Writes to the dataset index that are not bulk imports: signals computed from a row's URL."""

import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from optout import fetch, imaging
from optout.imaging import hashbits
from optout.models import DatasetRow, HashDescriptor

log = logging.getLogger(__name__)

# A row whose URL failed this many times for a transient reason is given up on.
MAX_HASH_ATTEMPTS = 3


def our_descriptor() -> HashDescriptor:
    descriptor, _ = HashDescriptor.objects.get_or_create(
        key=imaging.descriptor_key(), defaults={"details": imaging.DESCRIPTOR}
    )
    return descriptor


def row_signal_fields(computed: imaging.ImageSignals) -> dict:
    """The DatasetRow columns that hold a set of signals."""
    words = hashbits.pdq_to_words(computed.pdq) if computed.pdq is not None else (None, None, None, None)
    return {
        "sha256": computed.sha256,
        "phash": hashbits.to_signed64(computed.phash),
        "pdq_0": words[0],
        "pdq_1": words[1],
        "pdq_2": words[2],
        "pdq_3": words[3],
        "pdq_quality": computed.pdq_quality,
    }


def store_row_signals(row_id: int, computed: imaging.ImageSignals, *, descriptor: HashDescriptor) -> None:
    DatasetRow.objects.filter(pk=row_id).update(
        **row_signal_fields(computed),
        descriptor=descriptor,
        hashed_at=timezone.now(),
        fetch_error="",
        hash_attempts=F("hash_attempts") + 1,
    )


def record_row_failure(row: DatasetRow, code: str) -> None:
    """A refused address or a non-image is final; an unreachable URL is retried a few times first."""
    final = code != DatasetRow.FetchError.UNREACHABLE or row.hash_attempts + 1 >= MAX_HASH_ATTEMPTS
    DatasetRow.objects.filter(pk=row.pk).update(
        fetch_error=code,
        hash_attempts=F("hash_attempts") + 1,
        hashed_at=timezone.now() if final else None,
    )


def fetch_decoded(url: str) -> imaging.Decoded:
    """The decoded image at a URL a stranger gave us, under the configured fetch and image limits.

    Raises ``fetch.FetchError`` (its ``code`` is an item verdict) or ``imaging.ImageRejected``.
    """
    fetched = fetch.fetch_image(
        url,
        allow_loopback=settings.OPTOUT_FETCH_ALLOW_LOOPBACK,
        timeout=settings.OPTOUT_FETCH_TIMEOUT,
        max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES,
    )
    return imaging.decode_image(
        fetched.data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
    )


def fetch_signals(url: str) -> imaging.ImageSignals:
    """The signals of the image at a URL (``fetch_decoded``'s errors)."""
    return imaging.signals_of(fetch_decoded(url))


def hash_row(row: DatasetRow, *, descriptor: HashDescriptor) -> None:
    """Fetch a row's URL through the SSRF-safe fetcher and store its signals, or the reason it failed."""
    try:
        computed = fetch_signals(row.url)
    except fetch.FetchError as exc:
        record_row_failure(row, exc.code)
        return
    except imaging.ImageRejected:
        record_row_failure(row, DatasetRow.FetchError.NOT_AN_IMAGE)
        return
    store_row_signals(row.pk, computed, descriptor=descriptor)


def rows_to_hash(dataset_id: int):
    """Rows of a dataset whose signals are still unknown (nor given up on)."""
    return DatasetRow.objects.filter(dataset_id=dataset_id, hashed_at__isnull=True)
