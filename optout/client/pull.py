"""``pull``: fetch the current release of a feed, verify everything, and make it the state.

The steps, each a function below (any failure raises ``PullError`` and leaves
the last good state untouched):

1. ``_fetch_manifest``: the manifest and its signature, under small size caps
   and one wall-clock deadline each;
2. ``_verify_manifest``: the signature verifies with a trusted key (the pinned
   key, or the next key a verified manifest announced: following a rotation);
   the manifest is well formed, its trusted comment repeats its feed, version
   and expiry, its ``key_id`` is the signing key's, and its feed is the state's;
3. ``_check_order``: it has not expired (a frozen feed), its version is not lower
   than the accepted one (a rollback), the same version is the same bytes, and
   one version ahead ``previous`` names the accepted manifest's sha256 (the
   hash chain);
4. ``_download``: each artifact is read up to its declared size plus one byte,
   within a deadline that grows with that size, and must match the declared
   size and sha256 (no mix-and-match, no endless data);
5. ``_apply_entries``: the delta is merged into the accepted entries (one version
   ahead), otherwise the snapshot is loaded (``_apply_parquet`` when the release
   has a Parquet snapshot, the gzip JSON Lines otherwise); the entries must be
   sorted, well formed, and hash to ``state_sha256``;
6. ``_commit``: the generation becomes current, and the keys to trust next time
   are pinned outside the generations (``state.pin``).
"""

import gzip
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

from optout.client import columnar, minisign, state
from optout.client import manifest as manifests
from optout.client.download import PullError, TooLarge, artifact_deadline, fetch

__all__ = ["PullError", "Result", "pull"]

MANIFEST_CAP = 1 << 20  # a manifest is a few hundred bytes
SIGNATURE_CAP = 4096


@dataclass
class Result:
    version: int
    method: str  # "snapshot", "delta" or "unchanged"
    entries: int
    expires: str
    key_id: str
    rotated: bool
    first_key: str | None = None  # the fingerprint of the key pinned by this (first) pull


@dataclass
class _Fetched:
    body: bytes
    signature: bytes


def pull(
    feed_url: str,
    *,
    state_dir: Path,
    pubkey: str | None,
    token: str | None = None,
    timeout: float = 30,
    now: datetime | None = None,
    trust_dir: Path | None = None,
) -> Result:
    """Fetch, verify and apply the feed's current release; raises ``PullError`` or ``state.StateError``.

    ``timeout`` is the wall-clock deadline of the manifest and of its signature; an artifact gets
    that much plus the time its declared size takes at ``download.ARTIFACT_MIN_RATE``.
    """
    state_dir = Path(state_dir)
    if not feed_url.endswith("/"):
        feed_url += "/"
    now = now or datetime.now(UTC)
    with state.locked(state_dir):
        current = state.read_current(state_dir)
        pinned = None
        if current is not None:
            try:
                pinned = state.read_pin(state_dir, trust_dir)
            except state.StateError:
                if pubkey is None:  # with --pubkey, a state without a pin starts trusting that key
                    raise
        trusted = _trusted_keys(pinned, pubkey)
        fetched = _fetch_manifest(feed_url, token=token, timeout=timeout)
        manifest, key = _verify_manifest(fetched, trusted, current)
        if not _check_order(manifest, fetched.body, current, now):
            if pinned is None:  # the accepted manifest verified with --pubkey: pin it
                state.write_pin(state_dir, _pin_for(key, manifest, None), trust_dir)
            return Result(manifest["version"], "unchanged", current.entries, current.expires, current.key_id, False)
        use_delta = (
            current is not None
            and manifest["version"] == current.version + 1
            and manifest.get("delta") is not None
            and manifest["delta"]["from"] == current.version
        )
        generation = state.new_generation(state_dir, manifest["version"])
        try:
            (generation / "manifest.json").write_bytes(fetched.body)
            (generation / "manifest.json.minisig").write_bytes(fetched.signature)
            # Deltas are small JSON Lines; a whole snapshot is read as Parquet when the release has one.
            columnar_snapshot = not use_delta and manifest.get("snapshot_parquet") is not None
            artifact = manifest["delta" if use_delta else "snapshot_parquet" if columnar_snapshot else "snapshot"]
            path = _download(feed_url, artifact, generation, token=token, timeout=timeout)
            if columnar_snapshot:
                count = _apply_parquet(manifest, path, generation)
            else:
                count = _apply_entries(
                    manifest, path, generation, previous=state_dir / current.generation if use_delta else None
                )
                path.unlink()
            accepted = _commit(
                state_dir, generation, manifest, fetched.body, key, pinned, count, feed_url, now, trust_dir
            )
        finally:
            if generation.exists():
                shutil.rmtree(generation, ignore_errors=True)
    return Result(
        manifest["version"],
        "delta" if use_delta else "snapshot",
        count,
        manifest["expires"],
        key.key_id_hex,
        rotated=current is not None and key.key_id_hex != current.key_id,
        first_key=accepted.key_id if current is None else None,
    )


# --- 1-3. The manifest ----------------------------------------------------------------------------


def _fetch_manifest(feed_url: str, *, token: str | None, timeout: float) -> _Fetched:
    body = fetch(urljoin(feed_url, "manifest.json"), cap=MANIFEST_CAP, token=token, timeout=timeout, deadline=timeout)
    signature = fetch(
        urljoin(feed_url, "manifest.json.minisig"), cap=SIGNATURE_CAP, token=token, timeout=timeout, deadline=timeout
    )
    return _Fetched(body, signature)


def parse_manifest(body: bytes) -> dict:
    """The manifest in ``body`` when it is well formed; raises ``PullError``."""
    try:
        return manifests.check(json.loads(body))
    except manifests.BadManifest as exc:
        raise PullError(f"the manifest is malformed: {exc}") from None
    except ValueError:
        raise PullError("the manifest is not JSON") from None


def _verify_manifest(
    fetched: _Fetched, trusted: dict[bytes, minisign.PublicKey], current: state.Current | None
) -> tuple[dict, minisign.PublicKey]:
    """The manifest and the key that signed it, once the signature and what it signs check out."""
    try:
        signature = minisign.parse_signature(fetched.signature.decode("utf-8"))
    except (minisign.BadSignature, UnicodeDecodeError) as exc:
        raise PullError(f"the manifest signature is unreadable: {exc}") from None
    key = trusted.get(signature.key_id)
    if key is None:
        known = ", ".join(sorted(k.key_id_hex for k in trusted.values()))
        raise PullError(f"the manifest is signed by key {signature.key_id_hex}, which is not trusted ({known})")
    try:
        comment = minisign.verify(fetched.body, signature, key)
    except minisign.BadSignature as exc:
        raise PullError(f"bad manifest signature: {exc}") from None
    manifest = parse_manifest(fetched.body)
    if comment != manifests.trusted_comment(manifest):
        raise PullError("the signature's trusted comment does not match the manifest")
    if manifest.get("key_id", key.key_id_hex) != key.key_id_hex:
        raise PullError("the manifest names another signing key than the one that signed it")
    if current is not None and manifest["feed"] != current.feed:
        raise PullError(f"this state follows feed {current.feed!r}, not {manifest['feed']!r}")
    return manifest, key


def _check_order(manifest: dict, body: bytes, current: state.Current | None, now: datetime) -> bool:
    """Whether the manifest is news (False: it is the accepted one); raises ``PullError`` when it is stale."""
    version = manifest["version"]
    if manifests.parse_time(manifest["expires"]) <= now:
        raise PullError(f"the feed's manifest (version {version}) expired at {manifest['expires']}: a frozen feed")
    if current is None:
        return True
    if version < current.version:
        raise PullError(f"rollback: the feed offers version {version}, older than the accepted {current.version}")
    if version == current.version:
        if hashlib.sha256(body).hexdigest() != current.manifest_sha256:
            raise PullError(f"the feed offers a different manifest for the accepted version {version}")
        return False
    if version == current.version + 1 and manifest["previous"]["sha256"] != current.manifest_sha256:
        raise PullError(
            f"version {version} does not follow the accepted version {current.version} "
            "(its previous manifest sha256 differs): a broken chain"
        )
    return True


def _trusted_keys(pinned: state.Pin | None, pubkey: str | None) -> dict[bytes, minisign.PublicKey]:
    given = None
    if pubkey is not None:
        try:
            given = minisign.parse_public_key(pubkey)
        except minisign.BadKey as exc:
            raise PullError(f"--pubkey: {exc}") from None
    if pinned is None:
        if given is None:
            raise PullError("the first pull needs --pubkey (the feed's minisign public key, or its file)")
        return {given.key_id: given}
    keys = pinned.keys()
    if given is not None and given.to_base64() not in {*(k.to_base64() for k in keys), pinned.anchor_key}:
        raise PullError(
            f"--pubkey {given.key_id_hex} is not the key this state trusts ({pinned.key_id}); "
            "to start over with another key, use a new --state directory"
        )
    return {k.key_id: k for k in keys}


# --- 4-5. The entries -----------------------------------------------------------------------------


def _download(feed_url: str, entry: dict, directory: Path, *, token: str | None, timeout: float) -> Path:
    """Fetch an artifact into ``directory`` and check its size and sha256 against the signed manifest."""
    url = urljoin(feed_url, entry["path"])
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".artifact-", delete=False) as handle:
        try:
            fetch(
                url,
                cap=entry["bytes"],
                token=token,
                timeout=timeout,
                deadline=artifact_deadline(entry["bytes"], timeout),
                out=handle,
            )
        except TooLarge:
            raise PullError(
                f"{entry['path']} is larger than the {entry['bytes']} bytes the manifest says: refused"
            ) from None
        size = handle.tell()
    path = Path(handle.name)
    if size != entry["bytes"]:
        raise PullError(f"{entry['path']} is {size} bytes, but the manifest says {entry['bytes']}: refused")
    if state.sha256_file(path) != entry["sha256"]:
        raise PullError(f"{entry['path']} does not have the sha256 the manifest names (mix-and-match?): refused")
    return path


def _apply_entries(manifest: dict, artifact: Path, generation: Path, *, previous: Path | None) -> int:
    """Write the generation's entries (a delta merged into ``previous``, or the snapshot); returns their count."""
    what = "delta" if previous is not None else "snapshot"
    writer = state.EntryWriter(generation)
    try:
        if previous is not None:
            _merge(previous, _lines(artifact, allow_remove=True), writer)
        else:
            for line in _lines(artifact, allow_remove=False):
                writer.add(line)
        state_sha256 = writer.finish()
    except ValueError as exc:
        writer.abort()
        raise PullError(f"the {what} is invalid: {exc}") from None
    if state_sha256 != manifest["state_sha256"]:
        raise PullError(
            f"after applying the {what} the state hashes to {state_sha256}, "
            f"not the manifest's state_sha256 {manifest['state_sha256']}"
        )
    if previous is None and writer.count != manifest["snapshot"]["entries"]:
        raise PullError("the snapshot does not hold as many entries as the manifest says")
    return writer.count


def _apply_parquet(manifest: dict, artifact: Path, generation: Path) -> int:
    """Write the generation's lookup files from the Parquet snapshot, which becomes its entries file."""
    try:
        count, state_sha256 = columnar.write_generation(artifact, generation)
    except ValueError as exc:
        raise PullError(f"the Parquet snapshot is invalid: {exc}") from None
    if state_sha256 != manifest["state_sha256"]:
        raise PullError(
            f"the Parquet snapshot's keys hash to {state_sha256}, not the manifest's state_sha256 {manifest['state_sha256']}"
        )
    if count != manifest["snapshot"]["entries"]:
        raise PullError("the Parquet snapshot does not hold as many entries as the manifest says")
    artifact.rename(generation / "entries.parquet")
    return count


def _lines(path: Path, *, allow_remove: bool):
    ops = ("add", "remove") if allow_remove else ("add",)
    try:
        with gzip.open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise ValueError(f"line {number} is not JSON") from None
                if not isinstance(line, dict) or line.get("op") not in ops:
                    raise ValueError(f"line {number} has no valid op")
                yield line
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"not a gzip file: {exc}") from None


def _merge(previous: Path, delta, writer: state.EntryWriter) -> None:
    """Apply a sorted delta to the previous generation's sorted entries, streaming both."""
    old = state.read_entries(previous)
    entry = next(old, None)
    last_delta = ""
    for change in delta:
        key = change.get("key")
        if not isinstance(key, str) or key <= last_delta:
            raise ValueError(f"the delta is not sorted by key at {key!r}")
        last_delta = key
        while entry is not None and entry["key"] < key:
            writer.add(entry)
            entry = next(old, None)
        present = entry is not None and entry["key"] == key
        if change["op"] == "remove":
            if not present:
                raise ValueError(f"a tombstone for {key}, which is not in the state")
        else:
            writer.add(change)
        if present:
            entry = next(old, None)
    while entry is not None:
        writer.add(entry)
        entry = next(old, None)


# --- 6. Commit ------------------------------------------------------------------------------------


def _commit(
    state_dir: Path,
    generation: Path,
    manifest: dict,
    body: bytes,
    key: minisign.PublicKey,
    pinned: state.Pin | None,
    count: int,
    feed_url: str,
    now: datetime,
    trust_dir: Path | None,
) -> state.Current:
    pin = _pin_for(key, manifest, pinned)
    accepted = state.Current(
        generation="",
        feed_url=feed_url,
        feed=manifest["feed"],
        tier=str(manifest.get("tier", "")),
        version=manifest["version"],
        manifest_sha256=hashlib.sha256(body).hexdigest(),
        created=str(manifest.get("created", "")),
        expires=manifest["expires"],
        accepted_at=manifests.iso(now),
        entries=count,
        state_sha256=manifest["state_sha256"],
        key_id=key.key_id_hex,
        public_key=key.to_base64(),
        next_key=pin.next_key,
    )
    state.commit_generation(state_dir, generation, accepted, pin=pin, previous_pin=pinned, trust_dir=trust_dir)
    return accepted


def _pin_for(key: minisign.PublicKey, manifest: dict, pinned: state.Pin | None) -> state.Pin:
    """The keys to trust after accepting ``manifest``, signed by ``key``: it, and the next key it announces."""
    announced = manifest.get("next_key")
    if announced is not None and announced["key_id"] == key.key_id_hex:
        announced = None
    return state.Pin(
        key_id=key.key_id_hex,
        public_key=key.to_base64(),
        next_key=announced,
        anchor_key=pinned.anchor_key if pinned else key.to_base64(),
    )
