"""``pull``: fetch the current release of a feed, verify everything, and make it the state.

Order of checks (any failure raises ``PullError`` and leaves the last good state
untouched):

1. the manifest and its signature are fetched under small size caps and a deadline;
2. the signature verifies with a trusted key: the pinned key, or the next key a
   verified manifest announced (``next_key``: following a rotation);
3. the manifest is well formed, its trusted comment repeats its feed, version and
   expiry, its ``key_id`` is the signing key's, and its feed is the state's feed;
4. it has not expired (a frozen feed), and its version is not lower than the
   accepted one (a rollback); the same version must be the same bytes;
5. one version ahead, ``previous`` must name the accepted manifest's sha256
   (the hash chain); the delta is then applied, otherwise the snapshot is loaded;
6. each artifact is read up to its declared size plus one byte and must match
   the declared size and sha256 (no mix-and-match, no endless data);
7. the entries are sorted, well formed, and hash to ``state_sha256``.
"""

import gzip
import hashlib
import json
import re
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from optout.client import minisign, state

MANIFEST_CAP = 1 << 20  # a manifest is a few hundred bytes
SIGNATURE_CAP = 4096
SMALL_DEADLINE = 60  # seconds for the manifest or its signature, however slowly they drip
USER_AGENT = "optout-client/1"
_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class PullError(Exception):
    """The feed's answer cannot be accepted; the message says why."""


class TooLarge(PullError):
    """A response longer than its cap."""


@dataclass
class Result:
    version: int
    method: str  # "snapshot", "delta" or "unchanged"
    entries: int
    expires: str
    key_id: str
    rotated: bool


# --- HTTP -------------------------------------------------------------------------------------


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise PullError(f"{req.full_url} redirects to {newurl}: refused")
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise PullError(f"{req.full_url} redirects from https to {newurl}: refused")
        # The token is an unredirected header, so it never follows a redirect to anyone.
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener():
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _NoDowngrade(),
    )


def fetch(url: str, *, cap: int, token: str | None, timeout: float, deadline: float | None, out=None) -> bytes:
    """GET ``url``; the body (or, with ``out``, writes it there and returns b""). Refuses more than ``cap`` bytes."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise PullError(f"{url}: only http and https feeds are supported")
    # The scheme is checked just above: no file: or ftp: URL gets here.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})  # noqa: S310
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    try:
        with _opener().open(request, timeout=timeout) as response:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise PullError(f"{url} came with Content-Encoding {encoding}, which was not asked for")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise TooLarge(f"{url} is {int(length)} bytes, more than the {cap} expected: refused")
            received = 0
            chunks = []
            while True:
                chunk = response.read(min(1 << 16, cap + 1 - received))
                if not chunk:
                    break
                received += len(chunk)
                if received > cap:
                    raise TooLarge(f"{url} sent more than the {cap} bytes expected (endless data?): refused")
                if deadline is not None and time.monotonic() - started > deadline:
                    raise PullError(f"{url} took longer than {deadline:.0f} s: refused")
                if out is not None:
                    out.write(chunk)
                else:
                    chunks.append(chunk)
                if received == cap:
                    # One more read tells a body of exactly ``cap`` bytes from a longer one.
                    if response.read(1):
                        raise TooLarge(f"{url} sent more than the {cap} bytes expected (endless data?): refused")
                    break
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        hint = " (the partner feed needs --token)" if exc.code in (401, 403) else ""
        raise PullError(f"{url} answered HTTP {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        raise PullError(f"cannot reach {url}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise PullError(f"{url}: {exc}") from None


# --- Checks -----------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PullError(f"the manifest is malformed: {message}")


def _check_file(entry, what: str) -> dict:
    _require(isinstance(entry, dict), f"{what} is not an object")
    _require(isinstance(entry.get("path"), str) and _ARTIFACT_NAME.fullmatch(entry["path"]), f"{what} has a bad path")
    _require(".." not in entry["path"], f"{what} has a bad path")
    _require(isinstance(entry.get("sha256"), str) and _HEX64.fullmatch(entry["sha256"]), f"{what} has a bad sha256")
    _require(isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0, f"{what} has a bad size")
    return entry


def parse_manifest(body: bytes) -> dict:
    try:
        manifest = json.loads(body)
    except ValueError:
        raise PullError("the manifest is not JSON") from None
    _require(isinstance(manifest, dict), "not an object")
    _require(isinstance(manifest.get("feed"), str), "no feed name")
    version = manifest.get("version")
    _require(isinstance(version, int) and not isinstance(version, bool) and version >= 1, "no valid version")
    try:
        state.parse_time(manifest.get("expires"))
    except ValueError:
        raise PullError("the manifest is malformed: no valid expiry") from None
    _require(
        isinstance(manifest.get("state_sha256"), str) and _HEX64.fullmatch(manifest["state_sha256"]), "state_sha256"
    )
    _check_file(manifest.get("snapshot"), "the snapshot")
    _require(isinstance(manifest["snapshot"].get("entries"), int), "the snapshot has no entry count")
    if manifest.get("delta") is not None:
        _check_file(manifest["delta"], "the delta")
        _require(isinstance(manifest["delta"].get("from"), int), "the delta has no base version")
    previous = manifest.get("previous")
    if version == 1:
        _require(previous is None, "release 1 names a previous release")
    else:
        _require(isinstance(previous, dict), "no previous release")
        _require(previous.get("version") == version - 1, "previous is not the version before")
        _require(isinstance(previous.get("sha256"), str) and _HEX64.fullmatch(previous["sha256"]), "previous sha256")
    next_key = manifest.get("next_key")
    if next_key is not None:
        try:
            key = minisign.parse_public_key(next_key["public_key"])
        except (minisign.BadKey, KeyError, TypeError, AttributeError):
            raise PullError("the manifest is malformed: next_key is not a public key") from None
        _require(next_key.get("key_id") == key.key_id_hex, "next_key's key_id is not its key's")
    return manifest


def trusted_comment(manifest: dict) -> str:
    return f"feed:{manifest['feed']} version:{manifest['version']} expires:{manifest['expires']}"


# --- Pull -------------------------------------------------------------------------------------


def pull(
    feed_url: str,
    *,
    state_dir: Path,
    pubkey: str | None,
    token: str | None = None,
    timeout: float = 30,
    now: datetime | None = None,
) -> Result:
    """Fetch, verify and apply the feed's current release; raises ``PullError`` or ``state.StateError``."""
    state_dir = Path(state_dir)
    if not feed_url.endswith("/"):
        feed_url += "/"
    with state.locked(state_dir):
        current = state.read_current(state_dir)
        trusted = _trusted_keys(current, pubkey)
        body = fetch(
            urljoin(feed_url, "manifest.json"), cap=MANIFEST_CAP, token=token, timeout=timeout, deadline=SMALL_DEADLINE
        )
        signature_bytes = fetch(
            urljoin(feed_url, "manifest.json.minisig"),
            cap=SIGNATURE_CAP,
            token=token,
            timeout=timeout,
            deadline=SMALL_DEADLINE,
        )

        # 2. The signature, by a trusted key.
        try:
            signature = minisign.parse_signature(signature_bytes.decode("utf-8"))
        except (minisign.BadSignature, UnicodeDecodeError) as exc:
            raise PullError(f"the manifest signature is unreadable: {exc}") from None
        key = trusted.get(signature.key_id)
        if key is None:
            known = ", ".join(sorted(k.key_id_hex for k in trusted.values()))
            raise PullError(f"the manifest is signed by key {signature.key_id_hex}, which is not trusted ({known})")
        try:
            comment = minisign.verify(body, signature, key)
        except minisign.BadSignature as exc:
            raise PullError(f"bad manifest signature: {exc}") from None

        # 3. What was signed.
        manifest = parse_manifest(body)
        if comment != trusted_comment(manifest):
            raise PullError("the signature's trusted comment does not match the manifest")
        if manifest.get("key_id", key.key_id_hex) != key.key_id_hex:
            raise PullError("the manifest names another signing key than the one that signed it")
        version = manifest["version"]
        if current is not None and manifest["feed"] != current.feed:
            raise PullError(f"this state follows feed {current.feed!r}, not {manifest['feed']!r}")

        # 4. Freshness and order.
        now = now or datetime.now(UTC)
        expires = state.parse_time(manifest["expires"])
        if expires <= now:
            raise PullError(f"the feed's manifest (version {version}) expired at {manifest['expires']}: a frozen feed")
        manifest_sha256 = hashlib.sha256(body).hexdigest()
        if current is not None:
            if version < current.version:
                raise PullError(
                    f"rollback: the feed offers version {version}, older than the accepted {current.version}"
                )
            if version == current.version:
                if manifest_sha256 != current.manifest_sha256:
                    raise PullError(f"the feed offers a different manifest for the accepted version {version}")
                return Result(version, "unchanged", current.entries, current.expires, current.key_id, False)
            if version == current.version + 1 and manifest["previous"]["sha256"] != current.manifest_sha256:
                raise PullError(
                    f"version {version} does not follow the accepted version {current.version} "
                    "(its previous manifest sha256 differs): a broken chain"
                )

        # 5-7. The entries.
        use_delta = (
            current is not None
            and version == current.version + 1
            and manifest.get("delta") is not None
            and manifest["delta"]["from"] == current.version
        )
        generation = state.new_generation(state_dir, version)
        try:
            (generation / "manifest.json").write_bytes(body)
            (generation / "manifest.json.minisig").write_bytes(signature_bytes)
            writer = state.EntryWriter(generation)
            try:
                if use_delta:
                    artifact = _download(feed_url, manifest["delta"], generation, token, timeout)
                    _merge(state_dir / current.generation, _lines(artifact, allow_remove=True), writer)
                else:
                    artifact = _download(feed_url, manifest["snapshot"], generation, token, timeout)
                    for line in _lines(artifact, allow_remove=False):
                        writer.add(line)
                state_sha256 = writer.finish()
            except ValueError as exc:
                writer.abort()
                raise PullError(f"the {'delta' if use_delta else 'snapshot'} is invalid: {exc}") from None
            artifact.unlink()
            if state_sha256 != manifest["state_sha256"]:
                raise PullError(
                    f"after applying the {'delta' if use_delta else 'snapshot'} the state hashes to {state_sha256}, "
                    f"not the manifest's state_sha256 {manifest['state_sha256']}"
                )
            if not use_delta and writer.count != manifest["snapshot"]["entries"]:
                raise PullError("the snapshot does not hold as many entries as the manifest says")

            rotated = current is not None and key.key_id_hex != current.key_id
            announced = manifest.get("next_key")
            if announced is not None and announced["key_id"] == key.key_id_hex:
                announced = None
            accepted = state.Current(
                generation="",
                feed_url=feed_url,
                feed=manifest["feed"],
                tier=str(manifest.get("tier", "")),
                version=version,
                manifest_sha256=manifest_sha256,
                created=str(manifest.get("created", "")),
                expires=manifest["expires"],
                accepted_at=state.iso(now),
                entries=writer.count,
                state_sha256=state_sha256,
                key_id=key.key_id_hex,
                public_key=key.to_base64(),
                anchor_key=current.anchor_key if current else key.to_base64(),
                next_key=announced,
            )
            state.commit_generation(state_dir, generation, accepted)
        finally:
            if generation.exists():
                shutil.rmtree(generation, ignore_errors=True)
        return Result(
            version, "delta" if use_delta else "snapshot", writer.count, manifest["expires"], key.key_id_hex, rotated
        )


def _trusted_keys(current: state.Current | None, pubkey: str | None) -> dict[bytes, minisign.PublicKey]:
    given = None
    if pubkey is not None:
        try:
            given = minisign.parse_public_key(pubkey)
        except minisign.BadKey as exc:
            raise PullError(f"--pubkey: {exc}") from None
    if current is None:
        if given is None:
            raise PullError("the first pull needs --pubkey (the feed's minisign public key, or its file)")
        return {given.key_id: given}
    keys = [minisign.parse_public_key(current.public_key)]
    if current.next_key:
        keys.append(minisign.parse_public_key(current.next_key["public_key"]))
    known = {*(k.to_base64() for k in keys), current.anchor_key}
    if given is not None and given.to_base64() not in known:
        raise PullError(
            f"--pubkey {given.key_id_hex} is not the key this state trusts ({current.key_id}); "
            "to start over with another key, use a new --state directory"
        )
    return {k.key_id: k for k in keys}


def _download(feed_url: str, entry: dict, directory: Path, token: str | None, timeout: float) -> Path:
    """Fetch an artifact into ``directory`` and check its size and sha256 against the signed manifest."""
    url = urljoin(feed_url, entry["path"])
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".artifact-", delete=False) as handle:
        try:
            fetch(url, cap=entry["bytes"], token=token, timeout=timeout, deadline=None, out=handle)
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


def _lines(path: Path, *, allow_remove: bool):
    try:
        with gzip.open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise ValueError(f"line {number} is not JSON") from None
                if not isinstance(line, dict) or line.get("op") not in (
                    ("add", "remove") if allow_remove else ("add",)
                ):
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
