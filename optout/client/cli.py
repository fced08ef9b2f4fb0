"""The command line: ``optout-client {pull,filter,check,hash-url,status}`` (also ``python -m optout.client``).

Exit status: 0 on success; 1 when the client refuses (a feed that does not
verify, a missing or expired state, a bad input) with one line on stderr saying
why; 2 for a usage error; ``check`` exits 3 when any URL is blocked.
"""

import argparse
import hashlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from optout.client import canonical, minisign, state
from optout.client.filter import FilterError, filter_file
from optout.client.pull import PullError, pull

ALLOW_EXPIRED = "--i-accept-an-expired-blocklist"


def _pubkey(value: str) -> str:
    """A key given inline (base64) or as a file (minisign.pub)."""
    path = Path(value)
    if len(value) < 1024 and path.is_file():
        return path.read_text(encoding="utf-8")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        type=Path,
        default=None,
        help=f"state directory (default: {state.default_state_dir()})",
    )
    common.add_argument(
        "--trust-dir",
        type=Path,
        default=None,
        help=f"where the pinned keys are kept, outside the state (default: ${state.TRUST_DIR_ENV} or {state.default_trust_dir()})",
    )
    parser = argparse.ArgumentParser(
        prog="optout-client",
        description="Keep a verified copy of the opt-out blocklist and drop blocked rows from URL lists.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("pull", parents=[common], help="fetch, verify and apply the feed's current release")
    p.add_argument("--feed", required=True, help="the tier's base URL, e.g. https://host/feed/v1/public/")
    p.add_argument("--pubkey", help="the feed's minisign public key (base64) or a minisign.pub file; needed first")
    p.add_argument("--token", default=os.environ.get("OPTOUT_FEED_TOKEN"), help="partner token (or OPTOUT_FEED_TOKEN)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30,
        help="seconds allowed for the manifest and for its signature, all told; artifacts get more by size (default 30)",
    )

    p = commands.add_parser("filter", parents=[common], help="drop blocked rows from a Parquet, CSV or JSONL file")
    p.add_argument("input", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the output file, in the input's format (.gz to compress)")
    p.add_argument("--url-column", default="url")
    p.add_argument("--sha256-column", default=None, help="column of image sha256 (hex) to check too")
    p.add_argument("--phash-column", default=None, help="column of pHashes (16 hex digits or int64; partner feed)")
    p.add_argument("--max-distance", type=int, default=None, help="drop rows within this pHash Hamming distance")
    p.add_argument("--batch-rows", type=int, default=65_536, help=argparse.SUPPRESS)
    p.add_argument(ALLOW_EXPIRED, dest="allow_expired", action="store_true", help="filter with an expired blocklist")

    p = commands.add_parser("check", parents=[common], help="say whether URLs are blocked (exit 3 if any is)")
    p.add_argument("urls", nargs="+")
    p.add_argument(ALLOW_EXPIRED, dest="allow_expired", action="store_true", help="answer from an expired blocklist")

    p = commands.add_parser("hash-url", parents=[common], help="print the sha256 and canonical form of URLs")
    p.add_argument("urls", nargs="+")

    commands.add_parser("status", parents=[common], help="describe the state: version, age, expiry, entries, key")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.state = args.state or state.default_state_dir()
    try:
        return _COMMANDS[args.command](args)
    except PullError as exc:
        _fail(f"pull refused: {exc}{_kept(args.state)}")
    except state.StateError as exc:
        _fail(f"refused: {exc}")
    except FilterError as exc:
        _fail(f"filter failed, no output written: {exc}")
    except OSError as exc:
        _fail(f"{exc}")
    return 1


def _fail(message: str) -> None:
    print(f"optout: {message}", file=sys.stderr)


def _kept(state_dir: Path) -> str:
    try:
        current = state.read_current(state_dir)
    except state.StateError:
        return ""
    return f" (kept version {current.version})" if current else " (no state kept)"


def _pull(args) -> int:
    result = pull(
        args.feed,
        state_dir=args.state,
        pubkey=_pubkey(args.pubkey) if args.pubkey else None,
        token=args.token,
        timeout=args.timeout,
        trust_dir=args.trust_dir,
    )
    if result.first_key is not None:
        key = minisign.parse_public_key(state.read_current(args.state).public_key)
        print(
            f"pinned key {key.key_id_hex} (fingerprint {key.fingerprint}) for {args.state}: "
            "check this fingerprint out of band, e.g. against the feed index or the operator's announcement"
        )
    if result.rotated:
        print(f"followed the feed's key rotation: now trusting key {result.key_id}")
    if result.method == "unchanged":
        print(f"already at version {result.version} ({result.entries} entries, expires {result.expires})")
    else:
        print(
            f"pulled version {result.version} ({result.method}): {result.entries} entries, "
            f"expires {result.expires}, key {result.key_id}"
        )
    return 0


def _load(args):
    blocklist = state.load(args.state, allow_expired=getattr(args, "allow_expired", False), trust_dir=args.trust_dir)
    if blocklist.expired:
        print(
            f"optout: WARNING: using blocklist version {blocklist.current.version}, which EXPIRED at "
            f"{blocklist.current.expires}, because {ALLOW_EXPIRED} was given: recent removals may be missing",
            file=sys.stderr,
        )
    return blocklist


def _filter(args) -> int:
    blocklist = _load(args)
    counts = filter_file(
        blocklist,
        args.input,
        args.out,
        url_column=args.url_column,
        sha256_column=args.sha256_column,
        phash_column=args.phash_column,
        max_distance=args.max_distance,
        batch_rows=args.batch_rows,
    )
    print(f"{counts.summary()}; blocklist {blocklist.current.feed} version {blocklist.current.version}")
    return 0


def _check(args) -> int:
    blocklist = _load(args)
    blocked = False
    for url in args.urls:
        try:
            digest = hashlib.sha256(canonical.canonical_url(url).encode("ascii")).digest()
        except canonical.BadURL as exc:
            _fail(f"{url}: not a URL ({exc})")
            return 1
        if digest in blocklist.urls:
            blocked = True
            print(f"blocked\t{url}")
        else:
            print(f"not blocked\t{url}")
    return 3 if blocked else 0


def _hash_url(args) -> int:
    status = 0
    for url in args.urls:
        try:
            print(f"{canonical.url_sha256(url)}  {canonical.canonical_url(url)}")
        except canonical.BadURL as exc:
            _fail(f"{url}: not a URL ({exc})")
            status = 1
    return status


def _status(args) -> int:
    current = state.read_current(args.state)
    if current is None:
        raise state.StateError(f"no blocklist in {args.state}: run `optout-client pull` first")
    now = datetime.now(UTC)
    problem = None
    try:
        state.load(args.state, allow_expired=True, now=now, trust_dir=args.trust_dir)
    except state.StateError as exc:
        problem = str(exc)
    expires = current.expires_at
    accepted = state.parse_time(current.accepted_at)
    left = (expires - now).total_seconds()
    print(f"state:    {args.state}")
    print(f"feed:     {current.feed} at {current.feed_url}")
    print(
        f"version:  {current.version} (created {current.created}, pulled {current.accepted_at}, {_ago(now - accepted)} ago)"
    )
    print(
        f"expires:  {current.expires} ({'EXPIRED ' + _ago(expires - now) + ' ago' if left <= 0 else 'in ' + _ago(expires - now)})"
    )
    print(f"entries:  {current.entries}")
    print(f"key id:   {current.key_id}" + (f" (next: {current.next_key['key_id']})" if current.next_key else ""))
    if problem:
        print(f"verified: no: {problem}")
    elif left <= 0:
        print("verified: yes, but expired: filter and check refuse it")
    else:
        print("verified: yes")
    return 0 if problem is None and left > 0 else 1


def _ago(delta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


_COMMANDS = {"pull": _pull, "filter": _filter, "check": _check, "hash-url": _hash_url, "status": _status}
