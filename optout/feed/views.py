"""The feed: release files at their fixed public URLs, and the public key.

- ``/feed/v1/<tier>/manifest.json`` and ``manifest.json.minisig``: the current
  release's manifest (the database decides which release is current).
- ``/feed/v1/<tier>/<name>``: a versioned file (``snapshot-000042.jsonl.gz``, its
  columnar twin ``snapshot-000042.parquet``, ``delta-...``, ``manifest-000042.json``
  and its ``.minisig``), immutable.
- ``/.well-known/optout/minisign.pub``: the public key of the latest release.

Files are read through the storage API (the file system, or S3), never by path.
Every response has a strong ETag (the quoted sha256 of its bytes, known from the
database, so a 304 costs no storage read) and answers ``If-None-Match`` with 304.
Versioned files are cacheable for a year; the current manifest for at most one
publishing interval and never past its expiry. The gzip files are sent as they
are (``application/gzip``: their sha256 is in the manifest); the manifest is
gzip-encoded for clients that accept it, as a representation with its own ETag.

The partner tier needs ``Authorization: Bearer <token>``; every request that
names a consumer is logged (``FeedAccess``, with the status sent) and counted
against that token's hourly limit.
"""

import gzip
import hashlib
import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from django.views.decorators.http import require_safe

from optout.blocklist import releases, signing
from optout.feed import consumers, throttling
from optout.models import FeedAccess, Release

_VERSIONED = re.compile(r"(?:snapshot|delta|manifest)-(\d{6,9})\.(?:jsonl\.gz|parquet|json|json\.minisig)")
_CURRENT = {"manifest.json", "manifest.json.minisig"}
_IMMUTABLE = 365 * 24 * 3600


def _content_type(name: str) -> str:
    if name.endswith(".gz"):
        return "application/gzip"
    if name.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    if name.endswith(".json"):
        return "application/json"
    return "text/plain; charset=utf-8"


def _matches(request, etag: str) -> bool:
    header = request.META.get("HTTP_IF_NONE_MATCH")
    if not header:
        return False
    # If-None-Match uses the weak comparison (RFC 9110, 13.1.2): W/"x" matches "x".
    candidates = [candidate.removeprefix("W/") for candidate in parse_etags(header)]
    return "*" in candidates or etag in candidates


def _manifest_max_age(release: Release) -> int:
    remaining = int((release.expires_at - timezone.now()).total_seconds())
    return max(0, min(settings.OPTOUT_PUBLISH_INTERVAL_MINUTES * 60, remaining))


def _resolve(tier: str, name: str) -> tuple[Release, str, dict, int | None]:
    """(release, versioned file name, its {sha256, bytes}, max-age or None for immutable); raises Http404."""
    if name in _CURRENT:
        release = releases.latest_release()
        if release is None:
            raise Http404("nothing published yet")
        real = releases.manifest_name(release.version) + name.removeprefix("manifest.json")
        max_age = _manifest_max_age(release)
    else:
        match = _VERSIONED.fullmatch(name)
        if match is None:
            raise Http404("no such file")
        # A snapshot reused by later releases belongs to the release that wrote it.
        release = Release.objects.filter(version=int(match[1])).first()
        real, max_age = name, None
    meta = release.tiers.get(tier, {}).get("files", {}).get(real) if release else None
    if meta is None:
        raise Http404("no such file")
    return release, real, meta, max_age


def _serve(request, tier: str, name: str):
    release, real, meta, max_age = _resolve(tier, name)
    scope = "public" if tier == releases.PUBLIC else "private"
    cache_control = f"{scope}, max-age={_IMMUTABLE}, immutable" if max_age is None else f"{scope}, max-age={max_age}"
    if max_age == 0:
        cache_control = f"{scope}, no-cache"
    path = releases.storage_path(tier, real)
    etag = f'"{meta["sha256"]}"'
    gzipped = real.endswith(".json") and "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", "").lower()
    if gzipped:
        # A different representation, so a different strong ETag.
        etag = f'"{meta["sha256"]}-gzip"'

    if _matches(request, etag):
        response = HttpResponseNotModified()
    elif real.endswith((".gz", ".parquet")):
        response = FileResponse(releases.feed_storage().open(path, "rb"), content_type=_content_type(real))
        response["Content-Length"] = str(meta["bytes"])
    else:
        with releases.feed_storage().open(path, "rb") as handle:
            body = handle.read()
        if gzipped:
            body = gzip.compress(body, mtime=0)
        response = HttpResponse(body, content_type=_content_type(real))
        if gzipped:
            response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    response["Cache-Control"] = cache_control
    if real.endswith(".json"):
        patch_vary_headers(response, ["Accept-Encoding"])
    if name in _CURRENT:
        response["X-Blocklist-Version"] = str(release.version)
    return response


@require_safe
def public_file(request, name: str):
    return _serve(request, releases.PUBLIC, name)


def _unauthorized() -> HttpResponse:
    response = HttpResponse("A partner token is needed: Authorization: Bearer <token>.\n", status=401)
    response["WWW-Authenticate"] = 'Bearer realm="optout-partner"'
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def partner_file(request, name: str):
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    consumer = consumers.find_consumer(token.strip()) if scheme.lower() == "bearer" else None
    if consumer is None:
        return _unauthorized()
    wait = throttling.hit(
        throttling.Limit("partner-feed", settings.OPTOUT_PARTNER_REQUESTS_PER_HOUR, 3600), str(consumer.pk)
    )
    if wait:
        response = HttpResponse("Too many requests for this token; retry later.\n", status=429)
        response["Retry-After"] = str(wait)
    else:
        try:
            response = _serve(request, releases.PARTNER, name)
        except Http404:
            response = HttpResponse("Not found.\n", status=404)
    patch_vary_headers(response, ["Authorization"])
    FeedAccess.objects.create(
        consumer=consumer, path=request.path[:200], status=response.status_code, at=timezone.now()
    )
    return response


def public_key_text() -> str | None:
    release = releases.latest_release()
    if release is not None:
        return signing.parse_public_key(release.public_key).to_file()
    # Nothing published yet: the .pub that generate_signing_key wrote beside the secret key.
    key_file = Path(settings.OPTOUT_SIGNING_KEY_FILE)
    pub = key_file.with_name(key_file.name.removesuffix(".key") + ".pub")
    try:
        return signing.parse_public_key(pub.read_text()).to_file()
    except (OSError, UnicodeDecodeError, signing.BadKey):
        return None


@require_safe
def public_key(request):
    text = public_key_text()
    if text is None:
        raise Http404("no signing key yet")
    etag = f'"{hashlib.sha256(text.encode()).hexdigest()}"'
    response = (
        HttpResponseNotModified() if _matches(request, etag) else HttpResponse(text, content_type=_content_type(""))
    )
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=3600"
    return response
