"""The command line: ``optout-client {pull,filter,check,hash-url,export-hashes,status}`` (or ``python -m optout.client``).

Exit status: 0 on success; 1 when the client refuses (a feed that does not
verify, a missing or expired state, a bad input) with one line on stderr saying
why; 2 for a usage error; ``check`` exits 3 when any URL is blocked.
"""

import argparse
import contextlib
import csv
import hashlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from optout.client import adapters, canonical, minisign, state
from optout.client.batch import Columns, DigestSet, Rules, WrongRelease
from optout.client.filter import FilterError, batch_rows_for, filter_file, require_algorithms, require_columns
from optout.client.pull import PullError, pull
from optout.client.shards import Job, filter_many, inputs

ALLOW_EXPIRED = "--i-accept-an-expired-blocklist"
_PARTNER_STATE_HELP = (
    "a state pulled from the partner tier of the same release, beside the public one of --state: "
    "says which drops are real entries and which decoys only"
)


def _pubkey(value: str) -> str:
    """A key given inline (base64) or as a file (minisign.pub)."""
    path = Path(value)
    if len(value) < 1024 and path.is_file():
        return path.read_text(encoding="utf-8")
    return value


def _at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""

    def whole(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"a whole number of at least {minimum}, not {value!r}")
        return number

    return whole


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

    p = commands.add_parser("filter", parents=[common], help="drop blocked rows from Parquet, CSV or JSONL files")
    p.add_argument("input", help="a file, a folder of shards, or a glob (quote it)")
    p.add_argument(
        "--out", type=Path, required=True, help="the output file in the input's format (.gz to compress), or a folder"
    )
    p.add_argument("--url-column", default="url")
    p.add_argument("--sha256-column", default=None, help="column of image sha256 (hex or 32 bytes) to check too")
    p.add_argument("--phash-column", default=None, help="column of pHashes (16 hex digits or int64; partner feed)")
    p.add_argument(
        "--max-distance", type=_at_least(0), default=None, help="drop rows within this pHash Hamming distance"
    )
    p.add_argument("--pdq-column", default=None, help="column of PDQ hashes (64 hex digits; partner feed)")
    p.add_argument(
        "--max-pdq-distance", type=_at_least(0), default=None, help="drop rows within this PDQ Hamming distance"
    )
    p.add_argument("--report", type=Path, default=None, help="write file,row,rule for every dropped row to this CSV")
    p.add_argument("--jobs", type=_at_least(1), default=1, help="worker processes for many input files (default 1)")
    p.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        help="threads of each process for near-duplicate lookups (default: the CPUs, shared among the --jobs)",
    )
    p.add_argument("--partner-state", type=Path, default=None, help=_PARTNER_STATE_HELP)
    p.add_argument("--batch-rows", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(ALLOW_EXPIRED, dest="allow_expired", action="store_true", help="filter with an expired blocklist")

    p = commands.add_parser("check", parents=[common], help="say whether URLs are blocked (exit 3 if any is)")
    p.add_argument("urls", nargs="+")
    p.add_argument("--partner-state", type=Path, default=None, help=_PARTNER_STATE_HELP)
    p.add_argument(ALLOW_EXPIRED, dest="allow_expired", action="store_true", help="answer from an expired blocklist")

    p = commands.add_parser("hash-url", parents=[common], help="print the sha256 and canonical form of URLs")
    p.add_argument("urls", nargs="+")

    p = commands.add_parser(
        "export-hashes", parents=[common], help="write the partner tier's PDQ hashes as 'pdq <hex>' lines"
    )
    p.add_argument("--out", type=Path, required=True, help="the file to write (ThreatExchange / HMA hash lines)")

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
        _fail(f"filter failed, no output written: {exc}" if args.command == "filter" else f"refused: {exc}")
    except WrongRelease as exc:
        _fail(f"filter failed: {exc}")
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


def _partner(args, blocklist):
    """The partner tier of ``--partner-state``, checked to be that of the same release as ``blocklist``; or None."""
    if args.partner_state is None:
        return None
    partner = state.load(args.partner_state, allow_expired=args.allow_expired, trust_dir=args.trust_dir)
    state.require_partner(blocklist, partner)
    return partner


def _filter(args) -> int:
    columns = Columns(url=args.url_column, sha256=args.sha256_column, phash=args.phash_column, pdq=args.pdq_column)
    require_columns(columns, max_distance=args.max_distance, max_pdq_distance=args.max_pdq_distance)
    sources = inputs(args.input)
    blocklist = _load(args)
    require_algorithms(blocklist, max_distance=args.max_distance, max_pdq_distance=args.max_pdq_distance)
    partner = _partner(args, blocklist)
    distances = {"max_distance": args.max_distance, "max_pdq_distance": args.max_pdq_distance}
    args.batch_rows = args.batch_rows or batch_rows_for(**distances)
    one_file = Path(args.input).is_file() and not args.out.is_dir()  # a folder or a glob writes into a folder
    rules = None
    if one_file or args.jobs <= 1:  # else only the workers need them: a near-duplicate index can take 360 MB
        rules = Rules(blocklist, **distances, exact=partner, threads=args.threads)
    with _report(args.report) as report:
        if one_file:
            counts = filter_file(
                rules, sources[0], args.out, columns=columns, batch_rows=args.batch_rows, report=report, progress=True
            )
        else:
            job = Job(
                state_dir=args.state,
                trust_dir=args.trust_dir,
                allow_expired=args.allow_expired,
                release=blocklist.current.manifest_sha256,
                **distances,
                columns=columns,
                batch_rows=args.batch_rows,
                partner_state_dir=args.partner_state,
                partner_release=partner.current.manifest_sha256 if partner is not None else None,
                threads=args.threads,
            )
            args.out.mkdir(parents=True, exist_ok=True)
            done = []

            def on_file(source, total):
                done.append(source)
                if sys.stderr.isatty():
                    print(f"\r{len(done)}/{len(sources)} files, {total.read:,} rows", end="", file=sys.stderr)

            counts = filter_many(rules, job, sources, args.out, jobs=args.jobs, report=report, on_file=on_file)
            if sys.stderr.isatty():
                print(file=sys.stderr)
    print(f"{counts.summary()}; blocklist {blocklist.current.feed} version {blocklist.current.version}")
    return 0


@contextlib.contextmanager
def _report(path: Path | None):
    """A csv.writer for ``--report`` (file,row,rule), written beside and renamed when the run succeeds."""
    if path is None:
        yield None
        return
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "row", "rule"))
        try:
            yield writer
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, path)


def _check(args) -> int:
    blocklist = _load(args)
    blocked = False
    keys = DigestSet(blocklist.url_bytes)
    partner = _partner(args, blocklist)
    real = DigestSet(partner.url_bytes) if partner is not None else None
    for url in args.urls:
        try:
            digest = hashlib.sha256(canonical.web_url(url).encode("ascii")).digest()
        except canonical.BadURL as exc:
            _fail(f"{url}: not a web URL ({exc})")
            return 1
        if digest in keys:
            blocked = True
            print(f"blocked\t{url}" if real is None or digest in real else f"blocked (decoy only)\t{url}")
        else:
            print(f"not blocked\t{url}")
    return 3 if blocked else 0


def _hash_url(args) -> int:
    status = 0
    for url in args.urls:
        try:
            form = canonical.web_url(url)
        except canonical.BadURL as exc:
            _fail(f"{url}: not a web URL ({exc})")
            status = 1
            continue
        print(f"{hashlib.sha256(form.encode('ascii')).hexdigest()}  {form}")
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


def _export_hashes(args) -> int:
    blocklist = _load(args)
    if "pdq" not in blocklist.manifest.get("algorithms", {}):
        _fail("this blocklist has no PDQ hashes: export-hashes needs the partner feed")
        return 1
    temporary = args.out.with_name(f".{args.out.name}.part")
    count = 0
    with open(temporary, "w", encoding="ascii") as handle:
        for line in adapters.hash_lines(blocklist):
            handle.write(line)
            count += 1
    os.replace(temporary, args.out)
    print(
        f"wrote {count} pdq hashes to {args.out}; blocklist {blocklist.current.feed} version {blocklist.current.version}"
    )
    return 0


_COMMANDS = {
    "pull": _pull,
    "filter": _filter,
    "check": _check,
    "hash-url": _hash_url,
    "status": _status,
    "export-hashes": _export_hashes,
}
