"""The release manifest's shared formats: its times, its trusted comment, and its well-formedness.

The server (``optout.blocklist.releases``) writes manifests with these helpers and
the client reads them with the same ones, so the two can never disagree on a
format. Times are UTC, to the second, written ``2026-12-01T20:57:12Z``. The
minisign trusted comment repeats the feed, the version and the expiry::

    feed:optout-public version:42 expires:2026-12-03T20:57:12Z
"""

import binascii
import hashlib
import re
from datetime import UTC, datetime

from optout.client import minisign

_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
HEX64 = re.compile(r"[0-9a-f]{64}")


class BadManifest(ValueError):
    """A manifest that is not well formed; the message says what is wrong."""


def iso(moment: datetime) -> str:
    """``moment`` in the manifest's time format (UTC, whole seconds, ``Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text) -> datetime:
    """An aware datetime from an ISO 8601 time with a zone; raises ``ValueError``."""
    if not isinstance(text, str):
        raise ValueError("not a time")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time without a time zone")
    return moment


def trusted_comment(manifest: dict) -> str:
    """The minisign trusted comment that signs ``manifest``'s feed, version and expiry."""
    return f"feed:{manifest['feed']} version:{manifest['version']} expires:{manifest['expires']}"


def state_sha256(keys: bytes) -> str:
    """``state_sha256`` of sorted 32-byte keys: the sha256 of their hex forms, each followed by a newline."""
    if not keys:
        return hashlib.sha256(b"").hexdigest()
    # hexlify's separator goes between groups of 32 bytes (none after the last): one pass in C.
    return hashlib.sha256(binascii.hexlify(keys, b"\n", 32) + b"\n").hexdigest()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BadManifest(message)


def _check_file(entry, what: str) -> dict:
    _require(isinstance(entry, dict), f"{what} is not an object")
    _require(isinstance(entry.get("path"), str) and _ARTIFACT_NAME.fullmatch(entry["path"]), f"{what} has a bad path")
    _require(".." not in entry["path"], f"{what} has a bad path")
    _require(isinstance(entry.get("sha256"), str) and HEX64.fullmatch(entry["sha256"]), f"{what} has a bad sha256")
    _require(isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0, f"{what} has a bad size")
    return entry


def check(manifest) -> dict:
    """``manifest`` (decoded JSON) when it is well formed; raises ``BadManifest``."""
    _require(isinstance(manifest, dict), "not an object")
    _require(isinstance(manifest.get("feed"), str), "no feed name")
    version = manifest.get("version")
    _require(isinstance(version, int) and not isinstance(version, bool) and version >= 1, "no valid version")
    try:
        parse_time(manifest.get("expires"))
    except ValueError:
        raise BadManifest("no valid expiry") from None
    _require(
        isinstance(manifest.get("state_sha256"), str) and HEX64.fullmatch(manifest["state_sha256"]), "state_sha256"
    )
    _check_file(manifest.get("snapshot"), "the snapshot")
    _require(isinstance(manifest["snapshot"].get("entries"), int), "the snapshot has no entry count")
    if manifest.get("snapshot_parquet") is not None:
        _check_file(manifest["snapshot_parquet"], "the Parquet snapshot")
    if manifest.get("delta") is not None:
        _check_file(manifest["delta"], "the delta")
        _require(isinstance(manifest["delta"].get("from"), int), "the delta has no base version")
    previous = manifest.get("previous")
    if version == 1:
        _require(previous is None, "release 1 names a previous release")
    else:
        _require(isinstance(previous, dict), "no previous release")
        _require(previous.get("version") == version - 1, "previous is not the version before")
        _require(isinstance(previous.get("sha256"), str) and HEX64.fullmatch(previous["sha256"]), "previous sha256")
    next_key = manifest.get("next_key")
    if next_key is not None:
        try:
            key = minisign.parse_public_key(next_key["public_key"])
        except (minisign.BadKey, KeyError, TypeError, AttributeError):
            raise BadManifest("next_key is not a public key") from None
        _require(next_key.get("key_id") == key.key_id_hex, "next_key's key_id is not its key's")
    return manifest
