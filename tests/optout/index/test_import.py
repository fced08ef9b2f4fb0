import csv
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from optout.client.canonical import url_sha256
from optout.imaging import hashbits
from optout.index.importer import Columns, import_files
from optout.models import Dataset, DatasetRow

pytestmark = pytest.mark.django_db

PHASH = "8000000000000001"  # top bit set: stored as a negative BIGINT
PDQ = "f" * 16 + "0123456789abcdef" + "0" * 15 + "1" + "8" + "0" * 15
SHA = "ab" * 32
COLUMNS = ["url", "phash", "pdq", "pdq_quality", "sha256", "caption"]

# Four distinct good URLs (one with a low-quality PDQ), one duplicate, and one bad row per reason.
ROWS = [
    {"url": "https://example.com/a.jpg", "phash": PHASH, "pdq": PDQ, "pdq_quality": 90, "sha256": SHA},
    {"url": "  http://images.example.org/b.png  ", "phash": "", "pdq": "", "pdq_quality": None, "sha256": ""},
    {"url": "https://example.com/c.jpg", "phash": PHASH.upper(), "pdq": PDQ, "pdq_quality": 30, "sha256": ""},
    {"url": "https://example.net/d.webp", "phash": None, "pdq": None, "pdq_quality": None, "sha256": SHA.upper()},
    {"url": "https://example.com/a.jpg", "phash": PHASH, "pdq": "", "pdq_quality": None, "sha256": ""},
    {"url": "ftp://example.com/e.jpg", "phash": "", "pdq": "", "pdq_quality": None, "sha256": ""},
    {"url": "https://example.com/f.jpg", "phash": "xyz", "pdq": "", "pdq_quality": None, "sha256": ""},
    {"url": "https://example.com/g.jpg", "phash": "", "pdq": PDQ[:-1], "pdq_quality": 80, "sha256": ""},
    {"url": "https://example.com/h.jpg", "phash": "", "pdq": PDQ, "pdq_quality": 101, "sha256": ""},
    {"url": "https://example.com/i.jpg", "phash": "", "pdq": "", "pdq_quality": None, "sha256": "ab"},
    {"url": "", "phash": PHASH, "pdq": "", "pdq_quality": None, "sha256": ""},
    {"url": "http:///no-host.jpg", "phash": "", "pdq": "", "pdq_quality": None, "sha256": ""},
]
ALL_HASHES = ["--phash-column=phash", "--pdq-column=pdq", "--pdq-quality-column=pdq_quality", "--sha256-column=sha256"]
EXPECTED_BAD = {
    "not an http(s) URL": 1,
    "bad pHash hex": 1,
    "bad PDQ hex": 1,
    "bad PDQ quality": 1,
    "bad sha256 hex": 1,
    "missing URL": 1,
    "bad URL": 1,
}


def _with_caption(rows):
    return [{**row, "caption": f"a photo, number {i}"} for i, row in enumerate(rows)]


def write_parquet(path, rows):
    table = pa.Table.from_pylist(
        _with_caption(rows),
        schema=pa.schema([(name, pa.int16() if name == "pdq_quality" else pa.string()) for name in COLUMNS]),
    )
    pq.write_table(table, path)


def write_csv(path, rows, opener=open):
    with opener(path, "wt", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in _with_caption(rows))


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt") as out:
        for row in _with_caption(rows):
            out.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
        out.write("\n")  # a blank line is not a record


def gzip_file(path):
    packed = path.with_name(path.name + ".gz")
    packed.write_bytes(gzip.compress(path.read_bytes()))
    return packed


def run(*args):
    out = io.StringIO()
    call_command("import_dataset", *map(str, args), "--no-progress", stdout=out)
    return out.getvalue()


@pytest.fixture(params=["parquet", "csv", "jsonl", "parquet.gz", "csv.gz", "jsonl.gz"])
def dataset_file(request, tmp_path):
    kind = request.param.removesuffix(".gz")
    path = tmp_path / f"part-00000.{kind}"
    {"parquet": write_parquet, "csv": write_csv, "jsonl": write_jsonl}[kind](path, ROWS)
    return gzip_file(path) if request.param.endswith(".gz") else path


def test_imports_each_format_with_exact_counts(dataset_file):
    summary = import_files(
        "laion-test",
        [dataset_file],
        columns=Columns(phash="phash", pdq="pdq", pdq_quality="pdq_quality", sha256="sha256"),
        batch_size=3,  # several batches, and the duplicate lands in another batch than its original
    )

    assert summary.rows_read == len(ROWS)
    assert summary.inserted == 4
    assert summary.already_present == 1
    assert dict(summary.bad) == EXPECTED_BAD
    assert sorted(DatasetRow.objects.values_list("url", flat=True)) == [
        "http://images.example.org/b.png",
        "https://example.com/a.jpg",
        "https://example.com/c.jpg",
        "https://example.net/d.webp",
    ]
    assert {example.where for example in summary.examples} == {f"row {n}" for n in range(6, 13)}


def test_stores_hashes_that_round_trip(dataset_file):
    run("laion-test", dataset_file, *ALL_HASHES)
    rows = {row.url: row for row in DatasetRow.objects.select_related("descriptor")}

    a = rows["https://example.com/a.jpg"]
    assert a.url_sha256 == url_sha256("https://example.com/a.jpg")
    assert a.phash < 0 and hashbits.phash_to_hex(hashbits.from_signed64(a.phash)) == PHASH
    assert hashbits.pdq_to_hex(hashbits.pdq_from_words([a.pdq_0, a.pdq_1, a.pdq_2, a.pdq_3])) == PDQ
    assert a.pdq_quality == 90
    assert a.sha256 == SHA
    assert a.descriptor.key == "import:phash=phash,pdq=pdq,pdq_quality=pdq_quality,sha256=sha256"
    assert a.descriptor.details["library"] == "unknown"
    assert a.hashed_at is None

    # Below quality 50 PDQ is discarded, the rest of the row kept; upper-case hex is normalised.
    c = rows["https://example.com/c.jpg"]
    assert hashbits.from_signed64(c.phash) == int(PHASH, 16)
    assert (c.pdq_0, c.pdq_1, c.pdq_2, c.pdq_3, c.pdq_quality) == (None,) * 5
    assert rows["https://example.net/d.webp"].sha256 == SHA

    # A row without any hash has none, and no descriptor.
    b = rows["http://images.example.org/b.png"]
    assert (b.phash, b.pdq_0, b.sha256, b.descriptor) == (None, None, "", None)
    assert b.url_sha256 == url_sha256("http://images.example.org/b.png")


def test_generated_chunk_columns_are_filled_for_imported_rows(tmp_path):
    path = tmp_path / "rows.parquet"
    write_parquet(path, ROWS[:1])
    run("laion-test", path, "--phash-column=phash", "--pdq-column=pdq", "--pdq-quality-column=pdq_quality")

    row = DatasetRow.objects.get()
    value = int(PHASH, 16)
    assert row.ph_c0 == (value >> 42) & ((1 << 22) - 1) == 2**21
    assert row.ph_c2 == value & ((1 << 21) - 1) == 1
    assert row.pdq_c11 == int(PDQ, 16) & ((1 << 21) - 1)


def test_reimport_adds_nothing_and_says_already_present(tmp_path):
    path = tmp_path / "rows.csv"
    write_csv(path, ROWS)
    run("laion-test", path, *ALL_HASHES, "--release=2022-03")
    assert DatasetRow.objects.count() == Dataset.objects.get().row_count == 4  # a URL twice in the file: once

    output = run("laion-test", path, *ALL_HASHES, "--batch-size=2")

    assert DatasetRow.objects.count() == Dataset.objects.get().row_count == 4
    assert "12 rows read, 0 inserted, 5 already present, 7 bad" in output
    assert "bad, not an http(s) URL: 1" in output
    assert "row 6: not an http(s) URL: ftp://example.com/e.jpg" in output
    dataset = Dataset.objects.get()
    assert (dataset.name, dataset.release) == ("laion-test", "2022-03")


def test_url_only_import_and_a_second_file_that_overlaps(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(first, ROWS[:2])
    write_jsonl(second, ROWS[1:4])

    summary = import_files("laion-test", [first, second])

    assert (summary.rows_read, summary.inserted, summary.already_present) == (5, 4, 1)
    assert Dataset.objects.get().row_count == 4
    assert not DatasetRow.objects.exclude(phash=None).exists()  # no hash columns asked for, none stored
    assert not DatasetRow.objects.exclude(descriptor=None).exists()


def test_malformed_csv_record_and_json_line_are_bad_rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        "url,phash\nhttps://example.com/1.jpg,\nhttps://example.com/2.jpg,,extra\nhttps://example.com/3.jpg,\n"
    )
    summary = import_files("laion-test", [path])
    assert (summary.rows_read, summary.inserted, dict(summary.bad)) == (3, 2, {"malformed record": 1})
    assert summary.examples[0].where == "line 3"

    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"url": "https://example.com/4.jpg"}\n{"url": \n{"url": 5}\n{"url": "https://example.com/6.jpg"}\n'
    )
    summary = import_files("laion-json", [path])
    assert (summary.rows_read, summary.inserted) == (4, 2)
    assert dict(summary.bad) == {"malformed record": 1, "not an http(s) URL": 1}
    assert [(e.where, e.reason) for e in summary.examples] == [
        ("row 3", "not an http(s) URL"),
        ("row 2", "malformed record"),
    ]


def test_missing_url_column_is_a_clear_error(tmp_path):
    path = tmp_path / "rows.parquet"
    write_parquet(path, ROWS)
    with pytest.raises(CommandError, match=r"rows.parquet: no column 'link' \(columns: caption, pdq"):
        run("laion-test", path, "--url-column=link")
    assert not Dataset.objects.exists()


def test_missing_hash_column_is_a_clear_error(tmp_path):
    path = tmp_path / "rows.csv"
    write_csv(path, ROWS)
    with pytest.raises(CommandError, match="no column 'hash'"):
        run("laion-test", path, "--phash-column=hash")


def test_unknown_format_is_a_clear_error(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("url\nhttps://example.com/a.jpg\n")
    with pytest.raises(CommandError, match="cannot tell the format .* pass --format"):
        run("laion-test", path)

    assert "1 inserted" in run("laion-test", path, "--format=csv")


def test_pdq_without_quality_is_stored_with_its_quality_unknown(tmp_path):
    path = tmp_path / "rows.parquet"
    write_parquet(path, ROWS)
    assert "7 inserted" in run("laion-test", path, "--pdq-column=pdq")  # only URL and PDQ are checked
    rows = {row.url: row for row in DatasetRow.objects.all()}
    for url in ("https://example.com/a.jpg", "https://example.com/c.jpg"):  # the 30 no longer drops it: unknown
        row = rows[url]
        assert hashbits.pdq_to_hex(hashbits.pdq_from_words([row.pdq_0, row.pdq_1, row.pdq_2, row.pdq_3])) == PDQ
        assert row.pdq_quality is None
    assert rows["http://images.example.org/b.png"].pdq_0 is None
    assert rows["https://example.com/a.jpg"].descriptor.key == "import:pdq=pdq"
    # Found by its PDQ, but never evidence: verification reads the unknown quality as below the floor.
    from optout.index import matcher
    from requests_app import verification

    a = rows["https://example.com/a.jpg"]
    assert a.pk in {match.row_id for match in matcher.pdq_neighbours(hashbits.pdq_from_hex(PDQ), 0)}
    a.phash = 0  # row_signals needs a pHash to describe a row at all
    assert verification.row_signals(a).pdq is None


def test_format_is_sniffed_from_magic_bytes_without_an_extension(tmp_path):
    path = tmp_path / "rows.parquet"
    write_parquet(path, ROWS)
    bare = tmp_path / "part-0"
    bare.write_bytes(gzip.compress(path.read_bytes()))

    assert "4 inserted, 1 already present, 7 bad" in run("laion-test", bare, *ALL_HASHES)
