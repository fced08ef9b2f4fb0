"""Releases of the blocklist: numbered, immutable, signed, in two tiers.

``publish_release`` makes release N (both tiers) from the current blocklist:

- a **snapshot**: every blocked entry, one JSON object per line, sorted by key
  (the entry's ``url_sha256``), gzip-compressed;
- a **delta** from release N-1 in the same form, where ``op`` is ``add`` (a new
  entry, or one whose hashes were filled in) or ``remove`` (a tombstone);
- a **manifest** (JSON with sorted keys and no spaces: ``feed``, ``version``, ``created``, ``expires``,
  ``previous``, ``snapshot``, ``delta``, ``state_sha256``, ``algorithms``) and its
  minisign signature ``.minisig``, whose trusted comment repeats the feed name,
  the version and the expiry.

Tiers. ``public`` lines carry ``key``, ``op``, ``url_sha256`` and ``sha256`` (of
the image bytes, or null when unknown): never a raw URL, a perceptual hash or a
reason. ``partner`` lines add ``phash`` (16 hex digits), ``pdq`` (64 hex digits)
and ``pdq_quality``. Tombstones carry only ``key``, ``op`` and ``url_sha256``.

``state_sha256`` is the hex sha256 of the snapshot's sorted keys, each followed
by ``"\\n"`` (the empty state hashes the empty string); a client that applied
the deltas checks it against its own state. ``previous`` names release N-1 and
the sha256 of that release's manifest bytes in the same tier, so manifests form
a hash chain.

Storage. Files go through Django's storage API under ``feed/v1/<tier>/`` with the
version in their names (``snapshot-000042.jsonl.gz``, ``delta-000042.jsonl.gz``,
``manifest-000042.json`` and ``.minisig``), and never change once the release
is committed. Paths inside a manifest are relative to the manifest's folder.
When the delta is empty the manifest points to the previous snapshot file
instead of writing an identical one. The database, not the storage, says which
release is current; after commit the current manifest is also copied to
``feed/v1/<tier>/manifest.json`` (and ``.minisig``) for serving a bucket directly.

Numbering. The publisher takes the blocklist lock (the ``BlocklistState`` row,
which ``hold``/``release_hold`` take too), so publishers run one at a time and
see a blocklist no one is changing; the ``Release`` constraints make a duplicate
or skipped number impossible even without it. Files written by a publisher whose
transaction then rolls back are overwritten by the next one: nothing points to them.

Rotation. With ``OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE`` set, each manifest carries
``next_key`` (the next public key and its key id), signed with the rest of the
manifest by the current key. See the README for the procedure.
"""

import gzip
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.utils import timezone

from optout import imaging
from optout.blocklist import events, holds, signing
from optout.client.manifest import iso, trusted_comment
from optout.imaging import hashbits
from optout.models import BlocklistEntry, BlocklistHold, Release

log = logging.getLogger(__name__)

PUBLIC = "public"
PARTNER = "partner"
TIERS = (PUBLIC, PARTNER)
FEED_ROOT = "feed/v1"

_SPOOL_BYTES = 32 * 1024 * 1024


class PublishError(Exception):
    """Publishing cannot start (no signing key, a wrong password, ...)."""


def feed_storage() -> Storage:
    """The storage that holds release files: the default storage (file system, or S3 when a bucket is set)."""
    return storages["default"]


def storage_path(tier: str, name: str) -> str:
    return f"{FEED_ROOT}/{tier}/{name}"


def snapshot_name(version: int) -> str:
    return f"snapshot-{version:06d}.jsonl.gz"


def delta_name(version: int) -> str:
    return f"delta-{version:06d}.jsonl.gz"


def manifest_name(version: int) -> str:
    return f"manifest-{version:06d}.json"


def feed_name(tier: str) -> str:
    return f"{settings.OPTOUT_FEED_NAME}-{tier}"


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- Keys ---------------------------------------------------------------------------------


def load_signing_key() -> signing.SigningKey:
    """The key ``OPTOUT_SIGNING_KEY_FILE`` holds (decrypted with the password file, if set); raises ``PublishError``."""
    path = Path(settings.OPTOUT_SIGNING_KEY_FILE)
    if not path.is_file():
        raise PublishError(
            f"No signing key at {path}. Create one with `python manage.py generate_signing_key` "
            "or point OPTOUT_SIGNING_KEY_FILE at it."
        )
    password = None
    if settings.OPTOUT_SIGNING_KEY_PASSWORD_FILE:
        try:
            password = Path(settings.OPTOUT_SIGNING_KEY_PASSWORD_FILE).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise PublishError(f"Cannot read OPTOUT_SIGNING_KEY_PASSWORD_FILE: {exc}") from None
    try:
        return signing.read_secret_key_file(path, password=password)
    except (signing.BadKey, OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"Cannot load the signing key {path}: {exc}") from None


def next_public_key() -> signing.PublicKey | None:
    if not settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE:
        return None
    try:
        return signing.parse_public_key(Path(settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE).read_text())
    except (signing.BadKey, OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"Cannot read OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE: {exc}") from None


# --- Lines ---------------------------------------------------------------------------------


def public_line(key: str, sha256: str) -> dict:
    return {"key": key, "op": "add", "url_sha256": key, "sha256": sha256 or None}


def partner_line(key: str, sha256: str, phash: int | None, pdq: str, pdq_quality: int | None) -> dict:
    return {
        "key": key,
        "op": "add",
        "url_sha256": key,
        "sha256": sha256 or None,
        "phash": hashbits.phash_to_hex(hashbits.from_signed64(phash)) if phash is not None else None,
        "pdq": pdq or None,
        "pdq_quality": pdq_quality if pdq else None,
    }


def tombstone_line(key: str) -> dict:
    return {"key": key, "op": "remove", "url_sha256": key}


@dataclass
class _Artifact:
    """A gzip JSON Lines file being written to a spooled temporary file, with its counts."""

    file: tempfile.SpooledTemporaryFile = field(default_factory=lambda: tempfile.SpooledTemporaryFile(_SPOOL_BYTES))
    entries: int = 0
    added: int = 0
    removed: int = 0

    def __post_init__(self):
        # mtime=0 and no file name: the same lines always give the same bytes.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self.file, mtime=0, compresslevel=6)
        self._buffer: list[bytes] = []

    def write(self, line: dict) -> None:
        self._buffer.append(canonical_json(line) + b"\n")
        self.entries += 1
        if line["op"] == "add":
            self.added += 1
        else:
            self.removed += 1
        if len(self._buffer) >= 4096:
            self._flush()

    def _flush(self) -> None:
        self._gzip.write(b"".join(self._buffer))
        self._buffer.clear()

    def close(self) -> tuple[str, int]:
        """Finish the file; returns its sha256 and size."""
        self._flush()
        self._gzip.close()
        size = self.file.tell()
        self.file.seek(0)
        digest = hashlib.sha256()
        while chunk := self.file.read(1 << 20):
            digest.update(chunk)
        self.file.seek(0)
        return digest.hexdigest(), size


def _save(storage: Storage, name: str, content) -> None:
    # A file of this name can only be left over from a publisher whose
    # transaction rolled back (committed names are never reused): replace it.
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, content)
    if saved != name:
        raise PublishError(f"the storage saved {name} as {saved}")


# --- Publishing ----------------------------------------------------------------------------


def publish_release(*, storage: Storage | None = None, signing_key: signing.SigningKey | None = None) -> Release:
    """Build, sign and store the next release of both tiers; returns it.

    Always makes a new release, even when nothing changed (it then re-signs the
    same state with a fresh expiry). After commit, copies the current manifests to
    ``manifest.json`` and sends ``events.release_published``. Raises
    ``PublishError`` when there is no usable signing key.
    """
    storage = storage or feed_storage()
    signing_key = signing_key or load_signing_key()  # before the lock: scrypt takes a moment
    upcoming = next_public_key()
    return _publish(storage, signing_key, upcoming)


@transaction.atomic
def _publish(storage: Storage, signing_key: signing.SigningKey, upcoming: signing.PublicKey | None) -> Release:
    holds.lock_blocklist()
    previous = Release.objects.order_by("-version").first()
    version = previous.version + 1 if previous else 1
    created = timezone.now().replace(microsecond=0)
    expires = created + timedelta(hours=settings.OPTOUT_RELEASE_TTL_HOURS)

    # The delta: entries changed since the previous release.
    deltas = {tier: _Artifact() for tier in TIERS}
    changed = BlocklistEntry.objects.filter(dirty=True).order_by("url_sha256")
    fields = ("url_sha256", "sha256", "phash", "pdq", "pdq_quality", "blocked", "published")
    for key, sha256, phash, pdq, quality, blocked, was_published in changed.values_list(*fields).iterator(10_000):
        if blocked:
            deltas[PUBLIC].write(public_line(key, sha256))
            deltas[PARTNER].write(partner_line(key, sha256, phash, pdq, quality))
        elif was_published:
            deltas[PUBLIC].write(tombstone_line(key))
            deltas[PARTNER].write(tombstone_line(key))
        # else: held and released between two releases, never published: nothing to say.
    delta_empty = deltas[PUBLIC].entries == 0

    # The snapshot, unless nothing changed: then the previous one is the same file.
    snapshots = None
    state = hashlib.sha256()
    if delta_empty and previous is not None:
        entries = previous.entries
        state_sha256 = previous.state_sha256
    else:
        snapshots = {tier: _Artifact() for tier in TIERS}
        blocked_entries = BlocklistEntry.objects.filter(blocked=True).order_by("url_sha256")
        for key, sha256, phash, pdq, quality in blocked_entries.values_list(*fields[:5]).iterator(10_000):
            snapshots[PUBLIC].write(public_line(key, sha256))
            snapshots[PARTNER].write(partner_line(key, sha256, phash, pdq, quality))
            state.update(key.encode("ascii") + b"\n")
        entries = snapshots[PUBLIC].entries
        state_sha256 = state.hexdigest()

    tiers = {}
    manifests = {}
    for tier in TIERS:
        files = {}
        if snapshots is not None:
            sha256, size = snapshots[tier].close()
            name = snapshot_name(version)
            _save(storage, storage_path(tier, name), File(snapshots[tier].file, name=name))
            snapshot = {"path": name, "sha256": sha256, "bytes": size, "entries": entries}
            files[name] = {"sha256": sha256, "bytes": size}
        else:
            snapshot = previous.tiers[tier]["snapshot"]
        sha256, size = deltas[tier].close()
        name = delta_name(version)
        _save(storage, storage_path(tier, name), File(deltas[tier].file, name=name))
        files[name] = {"sha256": sha256, "bytes": size}
        delta = {
            "from": previous.version if previous else 0,
            "path": name,
            "sha256": sha256,
            "bytes": size,
            "added": deltas[tier].added,
            "removed": deltas[tier].removed,
        }
        manifest = {
            "feed": feed_name(tier),
            "tier": tier,
            "version": version,
            "created": iso(created),
            "expires": iso(expires),
            "previous": (
                {"version": previous.version, "sha256": previous.tiers[tier]["manifest_sha256"]} if previous else None
            ),
            "snapshot": snapshot,
            "delta": delta,
            "state_sha256": state_sha256,
            "algorithms": _algorithms(tier),
            "key_id": signing_key.public_key.key_id_hex,
        }
        if upcoming is not None:
            manifest["next_key"] = {"key_id": upcoming.key_id_hex, "public_key": upcoming.to_base64()}
        body = canonical_json(manifest)
        signature = signing_key.sign(body, trusted_comment=trusted_comment(manifest)).encode("ascii")
        name = manifest_name(version)
        _save(storage, storage_path(tier, name), ContentFile(body))
        _save(storage, storage_path(tier, name + ".minisig"), ContentFile(signature))
        manifest_sha256 = hashlib.sha256(body).hexdigest()
        files[name] = {"sha256": manifest_sha256, "bytes": len(body)}
        files[name + ".minisig"] = {"sha256": hashlib.sha256(signature).hexdigest(), "bytes": len(signature)}
        tiers[tier] = {"manifest_sha256": manifest_sha256, "snapshot": snapshot, "files": files}
        manifests[tier] = (body, signature)

    release = Release.objects.create(
        version=version,
        previous=previous,
        created_at=created,
        expires_at=expires,
        entries=entries,
        added=deltas[PUBLIC].added,
        removed=deltas[PUBLIC].removed,
        state_sha256=state_sha256,
        key_id=signing_key.public_key.key_id_hex,
        public_key=signing_key.public_key.to_base64(),
        tiers=tiers,
    )
    BlocklistEntry.objects.filter(dirty=True, blocked=True).update(dirty=False, published=True)
    BlocklistEntry.objects.filter(dirty=True, blocked=False).update(dirty=False, published=False)
    holders = frozenset(BlocklistHold.objects.values_list("holder", flat=True))
    transaction.on_commit(lambda: _after_commit(storage, release, manifests, holders))
    log.info(
        "Published blocklist release %s: %s entries, +%s -%s",
        version,
        entries,
        release.added,
        release.removed,
    )
    return release


def _algorithms(tier: str) -> dict:
    algorithms = {
        "url_sha256": "sha256 of the UTF-8 canonical URL (Safe Browsing canonicalisation), hex",
        "sha256": "sha256 of the image bytes, hex",
        "state_sha256": "sha256 of the snapshot's sorted keys, each followed by a newline, hex",
        "signature": "minisign: Ed25519 over BLAKE2b-512 of the manifest bytes",
        "compression": "gzip; JSON Lines sorted by key",
    }
    if tier == PARTNER:
        algorithms["phash"] = imaging.DESCRIPTOR["phash"]
        algorithms["pdq"] = imaging.DESCRIPTOR["pdq"]
    return algorithms


def _after_commit(storage: Storage, release: Release, manifests: dict, holders: frozenset[str]) -> None:
    # Only the newest release may own the fixed names; a slower callback of an older one must not win.
    if not Release.objects.filter(version__gt=release.version).exists():
        for tier, (body, signature) in manifests.items():
            try:
                _save(storage, storage_path(tier, "manifest.json"), ContentFile(body))
                _save(storage, storage_path(tier, "manifest.json.minisig"), ContentFile(signature))
            except Exception:  # the views do not need these copies: log and go on
                log.exception("Could not copy the manifest of release %s to manifest.json", release.version)
    for receiver, result in events.release_published.send_robust(sender=Release, release=release, holders=holders):
        if isinstance(result, Exception):
            log.error("release_published receiver %r failed: %r", receiver, result, exc_info=result)


def latest_release() -> Release | None:
    return Release.objects.order_by("-version").first()
