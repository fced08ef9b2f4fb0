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

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection, transaction
from django.utils import timezone

from optout import imaging
from optout.blocklist import artifacts, decoys, events, feed_sql, holds, planner, signing
from optout.client.manifest import iso, trusted_comment
from optout.models import BlocklistEntry, Dataset, Release

log = logging.getLogger(__name__)

PUBLIC = "public"
PARTNER = "partner"
TIERS = (PUBLIC, PARTNER)
FEED_ROOT = "feed/v1"


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


def _save(storage: Storage, name: str, content) -> None:
    # A file of this name can only be left over from a publisher whose
    # transaction rolled back (committed names are never reused): replace it.
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, content)
    if saved != name:
        raise PublishError(f"the storage saved {name} as {saved}")


def _columns(tier: str) -> tuple[str, ...]:
    return artifacts.PARTNER_COLUMNS if tier == PARTNER else artifacts.PUBLIC_COLUMNS


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


@dataclass
class _Build:
    """One release being made: its number, times and, per tier, what the manifest says of each file."""

    storage: Storage
    version: int
    previous: Release | None
    created: datetime
    expires: datetime
    deltas: dict = field(default_factory=dict)
    snapshots: dict = field(default_factory=dict)
    files: dict = field(default_factory=lambda: {tier: {} for tier in TIERS})
    decoys: dict | None = None  # the public manifest's decoy summary
    decoy_changes: dict | None = None  # {dataset id or None: keys added or dropped}, from the public delta
    decoy_counts: dict | None = None  # {dataset id or None: decoy keys} of this release
    phases: dict = field(default_factory=dict)  # {what: seconds}, for the log and bench/publish.py

    @contextmanager
    def timed(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - started

    def store(self, tier: str, name: str, written: artifacts.Written) -> dict:
        _save(self.storage, storage_path(tier, name), File(written.file, name=name))
        self.files[tier][name] = {"sha256": written.sha256, "bytes": written.bytes}
        return {"path": name, "sha256": written.sha256, "bytes": written.bytes}


@transaction.atomic
def _publish(storage: Storage, signing_key: signing.SigningKey, upcoming: signing.PublicKey | None) -> Release:
    holds.lock_blocklist()
    if connection.vendor == "postgresql":
        # The release queries join groups whose sizes PostgreSQL cannot foresee; their estimates run high enough
        # to compile them (JIT), which took 0.8 s of a delta that then read nothing. A snapshot sorts every key
        # of its tier: with the default 4 MB it spilled to disk from 100,000 keys on (a million need 200 MB).
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '256MB'")
    previous = Release.objects.order_by("-version").first()
    created = timezone.now().replace(microsecond=0)
    build = _Build(
        storage=storage,
        version=previous.version + 1 if previous else 1,
        previous=previous,
        created=created,
        expires=created + timedelta(hours=settings.OPTOUT_RELEASE_TTL_HOURS),
    )
    with build.timed("decoys drawn"):
        decoys.draw_decoys()
    for tier in TIERS:
        if previous is None:
            with build.timed(f"{tier} snapshot"):
                _write_snapshot(build, tier, as_delta=True)
        else:
            with build.timed(f"{tier} delta"):
                _write_delta(build, tier)
            with build.timed(f"{tier} snapshot"):
                _write_snapshot(build, tier)
    # The new state is now the published one; decoy counts below are of this release.
    with build.timed("manifests"):
        changed = BlocklistEntry.objects.filter(dirty=True, blocked=True).update(
            dirty=False, published=True, decoys_drawn=True
        )
        changed += BlocklistEntry.objects.filter(dirty=True, blocked=False).update(dirty=False, published=False)
        planner.analyze_after_bulk(BlocklistEntry, changed)
        manifests = {tier: _tier_manifest(build, tier, signing_key, upcoming) for tier in TIERS}
    tiers = {}
    for tier, (body, signature) in manifests.items():
        name = manifest_name(build.version)
        _save(storage, storage_path(tier, name), ContentFile(body))
        _save(storage, storage_path(tier, name + ".minisig"), ContentFile(signature))
        manifest_sha256 = hashlib.sha256(body).hexdigest()
        files = build.files[tier]
        files[name] = {"sha256": manifest_sha256, "bytes": len(body)}
        files[name + ".minisig"] = {"sha256": hashlib.sha256(signature).hexdigest(), "bytes": len(signature)}
        tiers[tier] = {"manifest_sha256": manifest_sha256, "files": files, **build.snapshots[tier]}
    tiers[PUBLIC]["decoys"] = build.decoys
    # By dataset id, for the next release to count from (the manifest names datasets; names can change).
    tiers[PUBLIC]["decoy_counts"] = sorted(build.decoy_counts.items(), key=lambda item: (item[0] is not None, item[0]))

    exact = build.snapshots[PARTNER]  # the release row counts real entries: the partner tier is exact
    release = Release.objects.create(
        version=build.version,
        previous=previous,
        created_at=created,
        expires_at=build.expires,
        entries=exact["snapshot"]["entries"],
        added=build.deltas[PARTNER]["added"],
        removed=build.deltas[PARTNER]["removed"],
        state_sha256=exact["state_sha256"],
        key_id=signing_key.public_key.key_id_hex,
        public_key=signing_key.public_key.to_base64(),
        tiers=tiers,
    )
    newest = holds.newest_hold()  # what the release carries, for the receivers (``events``)
    transaction.on_commit(lambda: _after_commit(storage, release, manifests, newest))
    release.phases = build.phases  # not stored: what each part of making it took, for whoever called
    log.info("Published blocklist release %s: %s entries, +%s -%s (%s)", release.version, release.entries,
             release.added, release.removed, ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in
                                                       build.phases.items()))  # fmt: skip
    return release


def _write_delta(build: _Build, tier: str) -> None:
    """The delta from the previous release: changed entries (and, in the public tier, their decoys)."""
    writer = artifacts.JsonLinesWriter(partner=tier == PARTNER)
    if tier == PUBLIC:
        with planner.lookups(BlocklistEntry.objects.filter(dirty=True).count(), BlocklistEntry):
            feed_sql.make_delta_tables()
            build.decoy_changes = decoys.count_changes("optout_delta_touched")  # before the flags change
        for batch in artifacts.batches(feed_sql.public_delta(), _columns(tier)):  # small tables: hash joins
            writer.write(batch)
    else:
        for batch in artifacts.batches(feed_sql.partner_delta(), _columns(tier)):
            writer.write(batch)
    written = writer.finish()
    described = build.store(tier, delta_name(build.version), written)
    build.deltas[tier] = {
        "from": build.previous.version if build.previous else 0,
        **described,
        "added": writer.added,
        "removed": writer.removed,
    }


def _write_snapshot(build: _Build, tier: str, *, as_delta: bool = False) -> None:
    """The whole state as gzip JSON Lines and Parquet, with its state hash; the previous files when nothing changed.
    ``as_delta``: the first release, whose delta (from nothing) is the same lines as its snapshot."""
    before = build.previous.tiers.get(tier, {}) if build.previous else {}
    delta = build.deltas.get(tier)
    if delta and delta["added"] == delta["removed"] == 0 and "snapshot_parquet" in before:
        build.snapshots[tier] = {key: before[key] for key in ("snapshot", "snapshot_parquet", "state_sha256")}
        return
    partner = tier == PARTNER
    lines, table, state = artifacts.JsonLinesWriter(partner), artifacts.ParquetWriter(partner), artifacts.StateHash()
    sql = feed_sql.partner_snapshot() if partner else feed_sql.public_snapshot()
    for batch in artifacts.batches(sql, _columns(tier)):
        lines.write(batch)
        table.write(batch)
        state.write(batch)
    name = snapshot_name(build.version)
    parquet = name.replace(".jsonl.gz", ".parquet")
    written = lines.finish()
    if as_delta:
        described = build.store(tier, delta_name(build.version), written)
        build.deltas[tier] = {"from": 0, **described, "added": lines.added, "removed": 0}
        written.file.seek(0)
    build.snapshots[tier] = {
        "snapshot": {**build.store(tier, name, written), "entries": state.entries},
        "snapshot_parquet": {**build.store(tier, parquet, table.finish()), "entries": state.entries},
        "state_sha256": state.hexdigest(),
    }


def _tier_manifest(
    build: _Build, tier: str, signing_key: signing.SigningKey, upcoming: signing.PublicKey | None
) -> tuple[bytes, bytes]:
    """The tier's manifest bytes and their minisign signature."""
    previous = build.previous
    snapshot = build.snapshots[tier]
    manifest = {
        "feed": feed_name(tier),
        "tier": tier,
        "version": build.version,
        "created": iso(build.created),
        "expires": iso(build.expires),
        "previous": {"version": previous.version, "sha256": previous.tiers[tier]["manifest_sha256"]}
        if previous
        else None,
        "snapshot": snapshot["snapshot"],
        "snapshot_parquet": snapshot["snapshot_parquet"],
        "delta": build.deltas[tier],
        "state_sha256": snapshot["state_sha256"],
        "algorithms": _algorithms(tier),
        "key_id": signing_key.public_key.key_id_hex,
    }
    if tier == PUBLIC:
        manifest["decoys"] = build.decoys = _decoy_summary(build)
    if upcoming is not None:
        manifest["next_key"] = {"key_id": upcoming.key_id_hex, "public_key": upcoming.to_base64()}
    body = canonical_json(manifest)
    signature = signing_key.sign(body, trusted_comment=trusted_comment(manifest)).encode("ascii")
    return body, signature


def kept_decoy_counts(release: Release | None) -> dict | None:
    """{dataset id or None: decoy keys} of ``release``'s public tier, as the publisher kept them on it; None for a
    release that kept none (or no release)."""
    kept = release.tiers.get(PUBLIC, {}).get("decoy_counts") if release is not None else None
    return None if kept is None else dict((dataset, count) for dataset, count in kept)


def _decoy_counts(build: _Build) -> dict:
    """{dataset id or None: decoy keys} of this release: the previous release's counts with the changes the public
    delta saw, or, for a first release (or one after a release that kept no counts), a count of every decoy."""
    before = kept_decoy_counts(build.previous)
    if before is None or build.decoy_changes is None:
        return decoys.published_counts()
    counts = dict(before)
    for dataset, change in build.decoy_changes.items():
        counts[dataset] = counts.get(dataset, 0) + change
    counts = {dataset: n for dataset, n in counts.items() if n}
    # A dataset deleted since then took its decoys' dataset with it (they became keys of no URL): count anew.
    if set(counts) - {None} - set(Dataset.objects.values_list("pk", flat=True)):
        return decoys.published_counts()
    return counts


def _decoy_summary(build: _Build) -> dict:
    """What the public tier's decoys cost builders, per dataset (see ``decoys``); the previous release's when the
    public tier did not change."""
    delta = build.deltas[PUBLIC]
    before = build.previous.tiers[PUBLIC].get("decoys") if build.previous else None
    build.decoy_counts = counts = _decoy_counts(build)
    if before is not None and delta["added"] == delta["removed"] == 0:
        return before
    return {
        "per_key": settings.OPTOUT_PUBLIC_DECOYS,
        "datasets": [
            {
                "dataset": count.dataset,
                "release": count.release,
                "decoys": count.decoys,
                "rows": count.rows,
                "share": round(count.share, 9),
            }
            for count in decoys.decoy_counts(counts)
        ],  # fmt: skip
        "keys_of_no_url": decoys.unindexed_count(counts),
    }


def _algorithms(tier: str) -> dict:
    algorithms = {
        "url_sha256": "sha256 of the UTF-8 canonical URL (Safe Browsing canonicalisation), hex",
        "sha256": "sha256 of the image bytes, hex",
        "state_sha256": "sha256 of the snapshot's sorted keys, each followed by a newline, hex",
        "signature": "minisign: Ed25519 over BLAKE2b-512 of the manifest bytes",
        "compression": "gzip; JSON Lines sorted by key",
        "snapshot_parquet": artifacts.PARTNER_PARQUET_LAYOUT if tier == PARTNER else artifacts.PARQUET_LAYOUT,
    }
    if tier == PUBLIC:
        algorithms["decoys"] = (
            "each url_sha256 is published among decoys: keys of other rows of the same dataset and host, or keys "
            "of no URL; sha256 values sit on a random line of their group"
        )
    if tier == PARTNER:
        algorithms["phash"] = imaging.DESCRIPTOR["phash"]
        algorithms["pdq"] = imaging.DESCRIPTOR["pdq"]
    return algorithms


def _after_commit(storage: Storage, release: Release, manifests: dict, newest_hold: int) -> None:
    # Only the newest release may own the fixed names; a slower callback of an older one must not win.
    if not Release.objects.filter(version__gt=release.version).exists():
        for tier, (body, signature) in manifests.items():
            try:
                _save(storage, storage_path(tier, "manifest.json"), ContentFile(body))
                _save(storage, storage_path(tier, "manifest.json.minisig"), ContentFile(signature))
            except Exception:  # the views do not need these copies: log and go on
                log.exception("Could not copy the manifest of release %s to manifest.json", release.version)
    sent = events.release_published.send_robust(sender=Release, release=release, newest_hold=newest_hold)
    for receiver, result in sent:
        if isinstance(result, Exception):
            log.error("release_published receiver %r failed: %r", receiver, result, exc_info=result)


def latest_release() -> Release | None:
    return Release.objects.order_by("-version").first()
