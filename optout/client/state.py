"""The client's state directory: the last verified release, kept until a better one is verified.

Layout::

    STATE/current.json          which generation is current, and what was verified about it
    STATE/lock                  held by ``pull`` while it works (never opened through a symlink)
    STATE/v000042-<random>/     one generation: the release as accepted
        manifest.json, manifest.json.minisig   the exact bytes that were verified
        entries.jsonl           the entries, sorted by key, one JSON object a line (after a delta), or
        entries.parquet         the release's Parquet snapshot as downloaded and verified (after a snapshot)
        urls.bin                the keys (url_sha256) as sorted 32-byte digests
        sha256.bin              the image sha256 values, sorted, unique, 32 bytes each
        phash.bin               the pHashes (partner tier), sorted, unique, 8 bytes little-endian each
        pdq.bin                 the PDQ hashes (partner tier), sorted, unique, 32 bytes each

A generation is written in a temporary directory, renamed, and only then named
by ``current.json`` (itself replaced atomically), so a crash at any point leaves
the last good state in place. ``load`` trusts nothing in the state directory: it
checks the files against the sha256 values ``current.json`` records, the
manifest's signature against the **pinned** key, the expiry, and recomputes
``state_sha256`` from the keys.

The pin. The key a state trusts is not kept in the state directory, which holds
downloaded data (often a shared cache), but in a trust directory of the user's
configuration (``--trust-dir``, ``OPTOUT_CLIENT_TRUST_DIR``, by default
``~/.config/optout-client/trust``), one small file per state directory, named
after its absolute path. The first ``pull`` writes it with the ``--pubkey`` it
was given; later pulls update it only after verifying a rotation the pinned key
announced. So a rewritten ``current.json`` (with a generation signed by another
key) cannot make ``filter`` or ``check`` trust another key. While a pull
switches keys, the pin names both for a moment (written before ``current.json``
moves, narrowed after), so a crash between the two steps leaves a state that
still loads.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from optout.client import columnar, minisign
from optout.client.manifest import iso, parse_time, state_sha256

__all__ = ["Blocklist", "Current", "EntryWriter", "Pin", "StateError", "iso", "load", "parse_time", "read_current"]

FORMAT = 1
TRUST_DIR_ENV = "OPTOUT_CLIENT_TRUST_DIR"
CURRENT = "current.json"
FILES = ("manifest.json", "manifest.json.minisig", "urls.bin", "sha256.bin", "phash.bin")  # in every generation
ENTRY_FILES = ("entries.jsonl", "entries.parquet")  # exactly one of these
OPTIONAL_FILES = ("pdq.bin",)  # states pulled before it existed load without it
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_GENERATION = re.compile(r"(?:\.tmp-)?v[0-9]{6,}-[A-Za-z0-9_]+")


class StateError(Exception):
    """A state that is missing, unreadable, tampered with or expired: the client cannot answer."""


def default_state_dir() -> Path:
    try:
        import platformdirs
    except ImportError:  # platformdirs is a small dependency, but the client should still run without it
        return Path.home() / ".cache" / "optout-client"
    return Path(platformdirs.user_cache_dir("optout-client", appauthor=False))


def default_trust_dir() -> Path:
    if os.environ.get(TRUST_DIR_ENV):
        return Path(os.environ[TRUST_DIR_ENV])
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".config" / "optout-client" / "trust"
    return Path(platformdirs.user_config_dir("optout-client", appauthor=False)) / "trust"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass
class Current:
    """What ``current.json`` says: the accepted release and the keys it trusts."""

    generation: str
    feed_url: str
    feed: str
    tier: str
    version: int
    manifest_sha256: str
    created: str
    expires: str
    accepted_at: str
    entries: int
    state_sha256: str
    key_id: str
    public_key: str  # base64 minisign key that signed the accepted manifest (shown; trust comes from the pin)
    next_key: dict | None = None  # {"key_id", "public_key"} announced by the accepted manifest
    files: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, **self.__dict__}, sort_keys=True, indent=1).encode() + b"\n"

    @property
    def expires_at(self) -> datetime:
        return parse_time(self.expires)


def read_current(state_dir: Path) -> Current | None:
    """The recorded state, or None when there is none yet; raises ``StateError`` when it is unreadable."""
    path = Path(state_dir) / CURRENT
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(raw)
        if data.pop("format") != FORMAT:
            raise ValueError("unknown format")
        data.pop("anchor_key", None)  # states written before the pin kept it here
        return Current(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise StateError(f"{path} is damaged ({exc}); pull into a fresh --state directory") from None


class EntryWriter:
    """Writes one generation's entry files from entries given in strictly increasing key order.

    Checks each entry's form and computes ``state_sha256`` on the way.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self._entries = open(directory / "entries.jsonl", "wb")  # noqa: SIM115  (closed in finish)
        self._urls = open(directory / "urls.bin", "wb")  # noqa: SIM115
        self._sha256: set[bytes] = set()
        self._phash: set[int] = set()
        self._pdq: set[bytes] = set()
        self._state = hashlib.sha256()
        self._last = ""
        self.count = 0

    def add(self, line: dict) -> None:
        key = line.get("key")
        if not isinstance(key, str) or not _HEX64.fullmatch(key):
            raise ValueError(f"an entry key is not 64 lower-case hex digits: {key!r}")
        if key <= self._last:
            raise ValueError(f"entries are not sorted by key (or repeat one) at {key}")
        if line.get("url_sha256") != key:
            raise ValueError(f"entry {key}: url_sha256 differs from the key")
        entry = {"key": key, "url_sha256": key}
        sha256 = line.get("sha256")
        if sha256 is not None:
            if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
                raise ValueError(f"entry {key}: sha256 is not 64 lower-case hex digits")
            self._sha256.add(bytes.fromhex(sha256))
        entry["sha256"] = sha256
        for name in ("phash", "pdq", "pdq_quality"):
            if name in line:
                entry[name] = line[name]
        phash = line.get("phash")
        if phash is not None:
            if not isinstance(phash, str) or not _HEX16.fullmatch(phash):
                raise ValueError(f"entry {key}: phash is not 16 lower-case hex digits")
            self._phash.add(int(phash, 16))
        pdq = line.get("pdq")
        if pdq is not None:
            if not isinstance(pdq, str) or not _HEX64.fullmatch(pdq):
                raise ValueError(f"entry {key}: pdq is not 64 lower-case hex digits")
            self._pdq.add(bytes.fromhex(pdq))
        self._entries.write(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        self._urls.write(bytes.fromhex(key))
        self._state.update(key.encode("ascii") + b"\n")
        self._last = key
        self.count += 1

    def finish(self) -> str:
        """Close the files; returns ``state_sha256``."""
        self._entries.close()
        self._urls.close()
        (self.directory / "sha256.bin").write_bytes(b"".join(sorted(self._sha256)))
        (self.directory / "phash.bin").write_bytes(
            b"".join(value.to_bytes(8, "little") for value in sorted(self._phash))
        )
        (self.directory / "pdq.bin").write_bytes(b"".join(sorted(self._pdq)))
        return self._state.hexdigest()

    def abort(self) -> None:
        self._entries.close()
        self._urls.close()


def generation_files(directory: Path) -> list[str]:
    """The names of a generation's files: ``FILES``, its entry file, and the optional ones it has."""
    return [*FILES, *(name for name in (*ENTRY_FILES, *OPTIONAL_FILES) if (directory / name).exists())]


def read_entries(directory: Path):
    """The entries of a generation, in key order."""
    if (directory / "entries.parquet").exists():
        yield from columnar.read_entries(directory / "entries.parquet")
        return
    with open(directory / "entries.jsonl", "rb") as handle:
        for line in handle:
            yield json.loads(line)


def new_generation(state_dir: Path, version: int) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=state_dir, prefix=f".tmp-v{version:06d}-"))


@dataclass
class Pin:
    """The keys a state trusts, kept in the trust directory (see the module docstring)."""

    key_id: str
    public_key: str  # the key that signed the accepted manifest
    anchor_key: str  # the key given to the first pull
    next_key: dict | None = None  # announced by a manifest the pinned key signed
    switching: list[str] = field(default_factory=list)  # keys trusted only while a pull switches generations

    def keys(self) -> list[minisign.PublicKey]:
        texts = [self.public_key, *([self.next_key["public_key"]] if self.next_key else []), *self.switching]
        return [minisign.parse_public_key(text) for text in dict.fromkeys(texts)]


def pin_path(state_dir: Path, trust_dir: Path | None = None) -> Path:
    """The pin file of ``state_dir``: named after its absolute path, in the trust directory."""
    name = hashlib.sha256(str(Path(state_dir).resolve()).encode("utf-8")).hexdigest()[:32]
    return Path(trust_dir or default_trust_dir()) / f"{name}.json"


def read_pin(state_dir: Path, trust_dir: Path | None = None) -> Pin:
    """The pinned keys of ``state_dir``; raises ``StateError`` when there are none or they are unreadable."""
    path = pin_path(state_dir, trust_dir)
    try:
        data = json.loads(path.read_bytes())
        if data.pop("format") != FORMAT or data.pop("state") != str(Path(state_dir).resolve()):
            raise ValueError("it is not this state's pin")
        pin = Pin(**data)
        pin.keys()
        return pin
    except FileNotFoundError:
        raise StateError(
            f"no key is pinned for {state_dir} in {path.parent}: pull again with --pubkey "
            f"(or point --trust-dir / {TRUST_DIR_ENV} at the trust directory of the pull that made it)"
        ) from None
    except (OSError, ValueError, TypeError, KeyError, minisign.BadKey) as exc:
        raise StateError(f"the pinned key {path} is damaged ({exc}); pull again with --pubkey") from None


def write_pin(state_dir: Path, pin: Pin, trust_dir: Path | None) -> None:
    path = pin_path(state_dir, trust_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"format": FORMAT, "state": str(Path(state_dir).resolve()), **pin.__dict__}
    write_atomic(path, json.dumps(data, sort_keys=True, indent=1).encode() + b"\n")


def commit_generation(
    state_dir: Path,
    temporary: Path,
    current: Current,
    *,
    pin: Pin,
    previous_pin: Pin | None,
    trust_dir: Path | None = None,
) -> None:
    """Make ``temporary`` the current generation and ``pin`` the trusted keys.

    Order: the pin widened to the old and the new keys, the generation renamed,
    ``current.json`` switched, the pin narrowed to ``pin``.
    """
    names = generation_files(temporary)
    for name in names:
        with open(temporary / name, "rb") as handle:
            os.fsync(handle.fileno())
    current.files = {name: sha256_file(temporary / name) for name in names}
    if previous_pin is not None:
        old = [key.to_base64() for key in previous_pin.keys()]
        write_pin(state_dir, Pin(**{**pin.__dict__, "switching": old}), trust_dir)
    final = state_dir / temporary.name.removeprefix(".tmp-")
    os.replace(temporary, final)
    current.generation = final.name
    write_atomic(state_dir / CURRENT, current.to_json())
    write_pin(state_dir, pin, trust_dir)
    # Older generations are no longer named by anything. Only our own names are touched: --state may
    # point to a directory that holds other things.
    for child in state_dir.iterdir():
        if child.is_dir() and child.name != final.name and _GENERATION.fullmatch(child.name):
            shutil.rmtree(child, ignore_errors=True)


@contextlib.contextmanager
def locked(state_dir: Path):
    """Hold the state's lock (one ``pull`` at a time); POSIX only, a no-op elsewhere.

    The lock file is opened without following a symlink: whoever can write the state directory
    must not make ``pull`` create or truncate a file elsewhere.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = state_dir / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the lock {path} (a symlink?): {exc.strerror}") from None
    with os.fdopen(fd, "r+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another pull is running on {state_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Blocklist:
    """A loaded, verified state, ready for lookups."""

    current: Current
    manifest: dict
    url_bytes: bytes  # the keys, sorted 32-byte digests
    sha256_bytes: bytes  # the image sha256 values, sorted 32-byte digests
    phash_bytes: bytes
    pdq_bytes: bytes
    expired: bool

    def phashes(self) -> np.ndarray:
        """The pHashes as a uint64 array."""
        return np.frombuffer(self.phash_bytes, dtype="<u8").astype(np.uint64)

    def pdqs(self) -> np.ndarray:
        """The PDQ hashes as an (n, 4) array of big-endian 64-bit words."""
        return np.frombuffer(self.pdq_bytes, dtype=">u8").reshape(-1, 4)


def require_partner(public: Blocklist, partner: Blocklist) -> None:
    """Raise ``StateError`` unless ``partner`` is the partner tier of the very release whose public tier is
    ``public``: any other pair would count a newly blocked key as a decoy, or a withdrawn decoy as real. The two
    tiers of one release share its version and the moment it was built (both signed in their manifests)."""
    public_tier, exact = public.current, partner.current
    if public_tier.tier != "public":
        raise StateError(
            f"--partner-state tells decoys apart in the public tier, and --state holds the {public_tier.tier} tier"
        )
    if exact.tier != "partner":
        raise StateError(f"--partner-state must hold the partner tier, not the {exact.tier} tier")
    if (exact.version, exact.created) != (public_tier.version, public_tier.created):
        raise StateError(
            f"--partner-state holds {exact.feed} version {exact.version} (built {exact.created}), --state "
            f"{public_tier.feed} version {public_tier.version} (built {public_tier.created}): pull both tiers of "
            "the same release"
        )


def load(
    state_dir: Path, *, allow_expired: bool = False, now: datetime | None = None, trust_dir: Path | None = None
) -> Blocklist:
    """The verified blocklist in ``state_dir``; raises ``StateError`` (missing, tampered with, or expired)."""
    state_dir = Path(state_dir)
    current = read_current(state_dir)
    if current is None:
        raise StateError(f"no blocklist in {state_dir}: run `optout-client pull` first")
    trusted = {key.key_id: key for key in read_pin(state_dir, trust_dir).keys()}
    directory = state_dir / current.generation
    if not _GENERATION.fullmatch(current.generation) or current.generation.startswith("."):
        raise StateError(f"{state_dir / CURRENT} names a bad generation")
    try:
        known = {*FILES, *ENTRY_FILES, *OPTIONAL_FILES}
        if not set(FILES) <= set(current.files) <= known or len(set(ENTRY_FILES) & set(current.files)) != 1:
            raise StateError(f"{state_dir / CURRENT} does not name the files of a generation; pull again")
        for name in current.files:
            if sha256_file(directory / name) != current.files[name]:
                raise StateError(f"{directory / name} changed since it was verified; pull again")
        body = (directory / "manifest.json").read_bytes()
        signature = (directory / "manifest.json.minisig").read_text(encoding="utf-8")
        keys = (directory / "urls.bin").read_bytes()
        sha256s = (directory / "sha256.bin").read_bytes()
        phash_bytes = (directory / "phash.bin").read_bytes()
        pdq_bytes = (directory / "pdq.bin").read_bytes() if "pdq.bin" in current.files else b""
    except OSError as exc:
        raise StateError(f"cannot read the state in {directory}: {exc}") from None
    except UnicodeDecodeError:
        raise StateError(f"{directory / 'manifest.json.minisig'} is damaged") from None
    if hashlib.sha256(body).hexdigest() != current.manifest_sha256:
        raise StateError("the stored manifest is not the one that was accepted")
    try:
        parsed = minisign.parse_signature(signature)
        if parsed.key_id not in trusted:
            raise minisign.BadSignature(f"signed by key {parsed.key_id_hex}, which this state never pinned")
        minisign.verify(body, parsed, trusted[parsed.key_id])
        manifest = json.loads(body)
    except (minisign.BadSignature, ValueError) as exc:
        raise StateError(f"the stored manifest does not verify: {exc}") from None
    if len(keys) % 32 or len(sha256s) % 32 or len(phash_bytes) % 8 or len(pdq_bytes) % 32:
        raise StateError("the stored entry files are damaged")
    if state_sha256(keys) != manifest.get("state_sha256") or manifest.get("version") != current.version:
        raise StateError("the stored entries do not match the signed manifest; pull again")
    try:
        expires = parse_time(manifest.get("expires"))
    except ValueError:
        raise StateError("the stored manifest has no valid expiry") from None
    expired = expires <= (now or datetime.now(UTC))
    if expired and not allow_expired:
        raise StateError(
            f"the blocklist (version {current.version}) expired at {iso(expires)}: pull a fresh one "
            "(an expired list may miss recent removals)"
        )
    return Blocklist(
        current=current,
        manifest=manifest,
        url_bytes=keys,
        sha256_bytes=sha256s,
        phash_bytes=phash_bytes,
        pdq_bytes=pdq_bytes,
        expired=expired,
    )
