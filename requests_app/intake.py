"""Turning what a requester sends into URLs and reference signals.

Shared by the web form and the API, so both refuse the same things with the
same words. Reference images are read into memory, hashed, and dropped: they
are never written to disk, storage or logs (FILE_UPLOAD_HANDLERS keeps uploads
in memory; tests/requests_app/test_privacy.py checks it).
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from optout import imaging
from optout.client.canonical import BadURL, canonical_url
from optout.fetch import refusal_without_dns
from requests_app.models import ReferenceSignal
from requests_app.services import Reference

MAX_URLS = 20
MAX_IMAGES = 5
MAX_REQUEST_URL_LENGTH = 2048


def max_body_bytes() -> int:
    return MAX_IMAGES * settings.FILE_UPLOAD_MAX_MEMORY_SIZE + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_too_large(request) -> bool:
    """Refuse an oversized body from its declared length, before reading any of it."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > max_body_bytes()
    except ValueError:
        return True


BODY_TOO_LARGE = "The request is too large. Send fewer or smaller pictures."


def split_urls(values: Iterable[str]) -> list[str]:
    """Accept repeated fields and fields holding one URL per line."""
    urls = []
    for value in values:
        urls.extend(line.strip() for line in str(value).splitlines())
    return [url for url in urls if url]


def clean_urls(values: Iterable[str]) -> list[str]:
    urls = split_urls(values)
    if not urls:
        raise ValidationError("Give at least one link (URL) to the picture.", code="required")
    if len(urls) > MAX_URLS:
        raise ValidationError(
            f"Give at most {MAX_URLS} links in one request (you gave {len(urls)}). You can send another request for the rest.",
            code="too_many_urls",
        )
    problems = []
    for number, url in enumerate(urls, start=1):
        if len(url) > MAX_REQUEST_URL_LENGTH:
            problems.append(f"Link {number} is longer than {MAX_REQUEST_URL_LENGTH} characters.")
            continue
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            problems.append(f"Link {number} is not a web address starting with http:// or https://.")
            continue
        try:
            canonical_url(url)
        except BadURL:
            problems.append(f"Link {number} is not a valid web address.")
            continue
        # Links we could never fetch (a private or local address, another port) are refused now
        # rather than filed as a case that can say nothing; the demo's loopback stays allowed.
        refusal = refusal_without_dns(url, allow_loopback=settings.OPTOUT_FETCH_ALLOW_LOOPBACK)
        if refusal:
            problems.append(f"Link {number} cannot be checked. {refusal}")
    if problems:
        raise ValidationError(problems, code="bad_url")
    return urls


def hash_uploads(files) -> list[list[Reference]]:
    """Signals of each uploaded image; the bytes are dropped as soon as they are hashed."""
    files = list(files)
    if len(files) > MAX_IMAGES:
        raise ValidationError(f"Choose at most {MAX_IMAGES} pictures.", code="too_many_files")
    references = []
    for number, upload in enumerate(files, start=1):
        if upload.size > settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            raise ValidationError(
                f"Picture {number} is larger than {settings.FILE_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)} MB.",
                code="too_large",
            )
        data = upload.read()
        try:
            computed = imaging.reference_variants(
                imaging.decode_image(
                    data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
                )
            )
        except imaging.ImageRejected as exc:
            raise ValidationError(f"Picture {number}: {exc.message}", code=exc.code) from None
        finally:
            del data
            upload.close()
        references.append([_reference(variant, ReferenceSignal.Source.UPLOAD) for variant in computed])
    return references


def parse_client_signals(items: Iterable[dict]) -> list[list[Reference]]:
    """Signals a requester's device computed itself (the browser or an API client)."""
    items = list(items)
    if len(items) > MAX_IMAGES:
        raise ValidationError(f"Send signals of at most {MAX_IMAGES} pictures.", code="too_many_signals")
    references = []
    for number, item in enumerate(items, start=1):
        try:
            computed = imaging.variants_from_dict(item)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"Signals of picture {number} are not valid: {exc}", code="bad_signals") from None
        references.append([_reference(variant, ReferenceSignal.Source.CLIENT) for variant in computed])
    return references


def _reference(variant: "imaging.Variant", source: str) -> Reference:
    computed = variant.signals
    return Reference(
        phash=computed.phash,
        pdq=computed.pdq,
        pdq_quality=computed.pdq_quality,
        sha256=computed.sha256 or "",
        descriptor_key=imaging.variant_descriptor(imaging.descriptor_key(), variant.name),
        source=source,
        variant=variant.name,
    )
