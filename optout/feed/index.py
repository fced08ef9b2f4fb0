"""The feed's index at ``/feed/v1/<tier>/``: what a builder needs to start pulling, in JSON or HTML.

It names the tier's current manifest (version, expiry), its signature, the
public key's URL, its key id and fingerprint (the sha256 of the key, as the
client prints it when it first pins the key), and the client command to run.
JSON unless the request prefers HTML (a browser). It carries no entry, so the
partner tier's index is public too; its files still need a token. Before the
first release it says so, with a 200: a builder's first look is never a 404.
"""

from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from optout.blocklist import releases
from optout.client import minisign
from optout.feed.views import public_key_text


def _wants_html(request) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    html = accept.find("text/html")
    json = accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


def _index(request, tier: str) -> dict:
    base = request.build_absolute_uri(reverse(f"optout:feed-{tier}-index"))
    key_text = public_key_text()
    key = minisign.parse_public_key(key_text) if key_text else None
    release = releases.latest_release()
    manifest = None
    if release is not None and tier in release.tiers:
        manifest = {
            "url": base + "manifest.json",
            "signature": base + "manifest.json.minisig",
            "version": release.version,
            "expires": releases.iso(release.expires_at),
            "entries": release.entries,
        }
    pull = f"optout-client pull --feed {base} --pubkey minisign.pub" + (
        " --token $OPTOUT_FEED_TOKEN" if tier == releases.PARTNER else ""
    )
    return {
        "feed": releases.feed_name(tier),
        "tier": tier,
        "manifest": manifest,
        "public_key": {
            "url": request.build_absolute_uri(reverse("optout:public-key")),
            "key_id": key.key_id_hex if key else None,
            "fingerprint": key.fingerprint if key else None,
        },
        "token_required": tier == releases.PARTNER,
        "client": {"install": "pip install optout-client", "pull": pull},
    }


def _respond(request, tier: str):
    index = _index(request, tier)
    if _wants_html(request):
        response = render(request, "optout/feed_index.html", {"index": index})
    else:
        response = JsonResponse(index, json_dumps_params={"indent": 1})
    response["Cache-Control"] = "public, max-age=60"
    response["Vary"] = "Accept"
    return response


@require_safe
def public_index(request):
    return _respond(request, releases.PUBLIC)


@require_safe
def partner_index(request):
    return _respond(request, releases.PARTNER)
