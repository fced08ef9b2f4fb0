"""The blocklist lookup API: which of these URLs (or url_sha256 values) are blocked?

Answers from the latest *published* release, the one builders' clients have,
not from approvals still waiting for the next release, and exactly as its public
tier does: a decoy key published beside a real one is blocked too, or the API
would tell real from decoy for anyone who asks.
"""

import re

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from optout.blocklist import releases
from optout.client.canonical import BadURL, url_sha256
from optout.feed import throttling
from optout.models import MAX_ROW_URL_LENGTH, BlocklistEntry, PublicDecoy

MAX_ITEMS = 10_000
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_CHUNK = 1000


class LookupThrottle(BaseThrottle):
    """Per client (a keyed hash of its address), OPTOUT_LOOKUP_REQUESTS_PER_HOUR calls an hour."""

    def allow_request(self, request, view) -> bool:
        limit = throttling.Limit("blocklist-lookup", settings.OPTOUT_LOOKUP_REQUESTS_PER_HOUR, 3600)
        self._wait = throttling.hit(limit, throttling.client_key(request))
        return self._wait == 0

    def wait(self) -> float | None:
        return self._wait


class LookupInput(serializers.Serializer):
    items = serializers.ListField(
        child=serializers.CharField(max_length=MAX_ROW_URL_LENGTH, trim_whitespace=False),
        min_length=1,
        max_length=MAX_ITEMS,
        help_text="URLs (canonicalised as Safe Browsing does) or url_sha256 values (64 hex digits), at most 10,000.",
    )


class LookupResult(serializers.Serializer):
    url_sha256 = serializers.CharField(allow_null=True, help_text="sha256 of the canonical URL; null if not a URL.")
    blocked = serializers.BooleanField(help_text="In the latest release's public snapshot (decoys included).")
    error = serializers.CharField(required=False, help_text="Why the item is not a URL.")


class LookupOutput(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="The release answered from; null before the first.")
    results = LookupResult(many=True, help_text="One per item, in the order of the items.")


def _key(item: str) -> str:
    if _HEX64.fullmatch(item):
        return item.lower()
    return url_sha256(item)


def lookup(items: list[str]) -> dict:
    """The blocked status of each item in the latest release (``LookupOutput``'s shape)."""
    keys: list[str | None] = []
    errors: dict[int, str] = {}
    for index, item in enumerate(items):
        try:
            keys.append(_key(item))
        except BadURL as exc:
            keys.append(None)
            errors[index] = str(exc)
    wanted = sorted({key for key in keys if key})
    # Read the version before and after the flags: a release committed in between would
    # pair one release's number with another's flags, so read again.
    for _ in range(3):
        release = releases.latest_release()
        blocked: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            blocked.update(
                BlocklistEntry.objects.filter(url_sha256__in=chunk, published=True).values_list("url_sha256", flat=True)
            )
            blocked.update(
                PublicDecoy.objects.filter(url_sha256__in=chunk, entry__published=True).values_list(
                    "url_sha256", flat=True
                )
            )
        again = releases.latest_release()
        if (release and release.version) == (again and again.version):
            break
    results = []
    for index, key in enumerate(keys):
        result = {"url_sha256": key, "blocked": key in blocked}
        if index in errors:
            result["error"] = errors[index]
        results.append(result)
    return {"version": release.version if release else None, "results": results}


class BlocklistLookupView(APIView):
    throttle_classes = [LookupThrottle]

    @extend_schema(
        request=LookupInput,
        responses={200: LookupOutput},
        summary="Which of these URLs are blocked in the latest release",
    )
    def post(self, request):
        data = LookupInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(LookupOutput(lookup(data.validated_data["items"])).data)
