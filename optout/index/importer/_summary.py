"""The import's options, limits, bad-row reasons and summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from optout.imaging.descriptor import PDQ_QUALITY_FLOOR

DEFAULT_BATCH_SIZE = 50_000
MIN_PDQ_QUALITY = PDQ_QUALITY_FLOOR  # a PDQ hash below it is noise, ours or a builder's
MAX_EXAMPLES = 10
FORMATS = ("auto", "parquet", "csv", "jsonl")

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_JSONL_BLOCK_BYTES = 8 << 20

# The roles a file column can play; files are read into record batches whose columns carry these names.
URL, PHASH, PDQ, PDQ_QUALITY, SHA256 = "url", "phash", "pdq", "pdq_quality", "sha256"

# Bad-row reasons, in the order they are checked (a row is reported under the first that applies).
MISSING_URL = "missing URL"
URL_TOO_LONG = "URL too long"
NOT_HTTP = "not an http(s) URL"
BAD_URL = "bad URL"
BAD_PHASH = "bad pHash hex"
BAD_PDQ = "bad PDQ hex"
BAD_PDQ_QUALITY = "bad PDQ quality"
BAD_SHA256 = "bad sha256 hex"
MALFORMED_RECORD = "malformed record"
_REASONS = (None, MISSING_URL, URL_TOO_LONG, NOT_HTTP, BAD_PHASH, BAD_PDQ, BAD_PDQ_QUALITY, BAD_SHA256, BAD_URL)


class DatasetImportError(Exception):
    """The import cannot start or go on: a missing file or column, an unknown format, bad options."""


@dataclass(frozen=True)
class Columns:
    """Which file column plays which role; ``None`` means the file has no such column."""

    url: str = "url"
    phash: str | None = None
    pdq: str | None = None
    pdq_quality: str | None = None
    sha256: str | None = None

    def by_role(self) -> dict[str, str]:
        roles = {URL: self.url, PHASH: self.phash, PDQ: self.pdq, PDQ_QUALITY: self.pdq_quality, SHA256: self.sha256}
        return {role: column for role, column in roles.items() if column}

    def descriptor_key(self) -> str | None:
        hashes = [f"{role}={column}" for role, column in self.by_role().items() if role != URL]
        return ("import:" + ",".join(hashes))[:200] if hashes else None


@dataclass(frozen=True)
class BadRow:
    path: str
    where: str  # "row 12" or "line 13"
    reason: str
    url: str


@dataclass
class ImportSummary:
    dataset: str
    rows_read: int = 0
    inserted: int = 0
    already_present: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0

    def add_bad(self, path: str, where: str, reason: str, url: str) -> None:
        self.bad[reason] += 1
        self.add_example(path, where, reason, url)

    def add_example(self, path: str, where: str, reason: str, url: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(BadRow(path, where, reason, _shorten(url)))

    def report(self) -> str:
        lines = [
            f"Dataset {self.dataset}: {self.rows_read} rows read, {self.inserted} inserted, "
            f"{self.already_present} already present, {self.bad_total} bad "
            f"in {self.elapsed:.1f} s ({self.rows_per_second:,.0f} rows/s)."
        ]
        for reason, count in sorted(self.bad.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  bad, {reason}: {count}")
        if self.examples:
            lines.append("Examples of bad rows:")
            lines.extend(f"  {bad.path} {bad.where}: {bad.reason}: {bad.url}" for bad in self.examples)
        return "\n".join(lines)


def _shorten(text, limit: int = 100) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
