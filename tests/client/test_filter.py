"""``filter``, ``check``, ``hash-url`` and ``status`` on a pulled blocklist; and failing closed without one."""

import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.blocklist import holds
from optout.client import canonical, state
from optout.client.pull import pull
from tests.client.blocklists import make_blocklist
from tests.optout.conftest import group as decoy_group

pytestmark = pytest.mark.django_db

BLOCKED_URL = "https://images.example.org/private/a.jpg"
# The same resource, written differently: every one canonicalises to BLOCKED_URL.
BLOCKED_SPELLINGS = [
    "HTTPS://Images.Example.ORG:443/private/./a.jpg#top",
    "https://images.example.org/private//a%2Ejpg",
    "https://user@images.example.org./public/../private/a.jpg",
]
SHA_BLOCKED = "ab" * 32
PHASH_BLOCKED = 0xF0F0_F0F0_0F0F_0F0F
CLEAN = ["https://cdn.example.net/ok/1.jpg", "https://cdn.example.net/ok/2.jpg", "https://cdn.example.net/ok/3.jpg"]


def rows() -> list[dict]:
    """Three rows blocked by URL, one by image sha256, one by nothing (but a near pHash), two clean, one bad URL."""
    out = [
        {"url": url, "sha256": "", "phash": "", "caption": f"blocked {i}"} for i, url in enumerate(BLOCKED_SPELLINGS)
    ]
    out.append(
        {
            "url": "https://mirror.example.com/copy.jpg",
            "sha256": SHA_BLOCKED.upper(),
            "phash": "",
            "caption": "same bytes",
        }
    )
    out.append(
        {"url": CLEAN[0], "sha256": "cd" * 32, "phash": f"{PHASH_BLOCKED ^ 0b111:016x}", "caption": "near, 3 bits"}
    )
    out.append({"url": CLEAN[1], "sha256": "", "phash": f"{PHASH_BLOCKED ^ 0xFFFF:016x}", "caption": "far, 16 bits"})
    out.append({"url": CLEAN[2], "sha256": "", "phash": "", "caption": 'quote " and, comma'})
    out.append({"url": "http:///no-host", "sha256": "", "phash": "", "caption": "bad"})
    return out


@pytest.fixture
def pulled(mirror, publish, builder, signing_key):
    holds.hold(
        holder="item:1",
        url_sha256=canonical.url_sha256(BLOCKED_URL),
        image_sha256=SHA_BLOCKED,
        phash=PHASH_BLOCKED,
    )
    publish()
    mirror.sync()

    def pull_tier(tier: str = "public"):
        code, out, err = builder("pull", "--feed", mirror.base(tier), "--pubkey", signing_key.public_key.to_base64())
        assert code == 0, err

    return pull_tier


def write_csv(path, data, *, gz=False):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(data[0]))
    writer.writeheader()
    writer.writerows(data)
    raw = text.getvalue().encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def read_csv(path, *, gz=False):
    raw = path.read_bytes()
    return list(csv.DictReader(io.StringIO((gzip.decompress(raw) if gz else raw).decode(), newline="")))


def write_jsonl(path, data, *, gz=False):
    raw = b"".join(json.dumps(row).encode() + b"\n" for row in data)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def read_jsonl(path, *, gz=False):
    raw = path.read_bytes()
    return [json.loads(line) for line in (gzip.decompress(raw) if gz else raw).splitlines()]


@pytest.mark.parametrize("gz", [False, True])
def test_filter_csv_drops_blocked_urls_in_any_spelling_and_blocked_bytes(pulled, builder, tmp_path, gz):
    pulled()
    suffix = ".csv.gz" if gz else ".csv"
    write_csv(tmp_path / f"in{suffix}", rows(), gz=gz)
    code, out, err = builder(
        "filter",
        tmp_path / f"in{suffix}",
        "--out",
        tmp_path / f"out{suffix}",
        "--sha256-column",
        "sha256",
        "--batch-rows",
        "3",
    )
    assert code == 0, err
    assert [row["url"] for row in read_csv(tmp_path / f"out{suffix}", gz=gz)] == CLEAN
    assert read_csv(tmp_path / f"out{suffix}", gz=gz)[2]["caption"] == 'quote " and, comma'
    assert out.startswith("8 rows read, 3 kept, 5 dropped (url 3, sha256 1, phash 0, pdq 0, bad_url 1, bad_row 0)")


@pytest.mark.parametrize("gz", [False, True])
def test_filter_jsonl_keeps_lines_as_they_were(pulled, builder, tmp_path, gz):
    pulled()
    suffix = ".jsonl.gz" if gz else ".jsonl"
    data = rows()
    write_jsonl(tmp_path / f"in{suffix}", data, gz=gz)
    code, out, err = builder(
        "filter", tmp_path / f"in{suffix}", "--out", tmp_path / f"out{suffix}", "--sha256-column", "sha256"
    )
    assert code == 0, err
    assert read_jsonl(tmp_path / f"out{suffix}", gz=gz) == [row for row in data if row["url"] in CLEAN]
    assert "3 kept, 5 dropped" in out


def test_filter_parquet_streams_batches_and_keeps_the_schema(pulled, builder, tmp_path):
    pulled()
    data = [{**row, "licence": "cc-by"} for row in rows() * 10]
    table = pa.Table.from_pylist(data)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=7)
    code, out, err = builder(
        "filter",
        tmp_path / "in.parquet",
        "--out",
        tmp_path / "out.parquet",
        "--sha256-column",
        "sha256",
        "--batch-rows",
        "4",
    )
    assert code == 0, err
    result = pq.read_table(tmp_path / "out.parquet")
    assert result.schema == table.schema
    assert result.column("url").to_pylist() == CLEAN * 10
    assert out.startswith("80 rows read, 30 kept, 50 dropped")
    # A column that repeats its values is dictionary-encoded, one of distinct values (the URLs) is not.
    chunks = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    encoded = {chunks.column(i).path_in_schema: chunks.column(i).has_dictionary_page for i in range(chunks.num_columns)}
    assert encoded["licence"] and not encoded["url"]


def test_without_the_sha256_column_only_urls_are_checked(pulled, builder, tmp_path):
    pulled()
    write_csv(tmp_path / "in.csv", rows())
    code, out, _ = builder("filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 0
    assert "mirror.example.com" in (tmp_path / "out.csv").read_text()


def test_partner_data_drops_rows_within_the_phash_distance(pulled, builder, tmp_path):
    pulled("partner")
    pq.write_table(pa.Table.from_pylist(rows()), tmp_path / "in.parquet")
    code, out, err = builder(
        "filter",
        tmp_path / "in.parquet",
        "--out",
        tmp_path / "out.parquet",
        "--phash-column",
        "phash",
        "--max-distance",
        "8",
        "--sha256-column",
        "sha256",
    )
    assert code == 0, err
    assert pq.read_table(tmp_path / "out.parquet").column("url").to_pylist() == CLEAN[1:]
    assert "phash 1" in out


def test_an_int64_phash_column_works_too(pulled, builder, tmp_path):
    pulled("partner")
    table = pa.table({"url": CLEAN[:2], "phash": pa.array([PHASH_BLOCKED - (1 << 64), 1], type=pa.int64())})
    pq.write_table(table, tmp_path / "in.parquet")
    args = ["--phash-column", "phash", "--max-distance", "0"]
    assert builder("filter", tmp_path / "in.parquet", "--out", tmp_path / "out.parquet", *args)[0] == 0
    assert pq.read_table(tmp_path / "out.parquet").column("url").to_pylist() == CLEAN[1:2]


def test_distance_filtering_needs_partner_data(pulled, builder, tmp_path):
    pulled("public")
    write_csv(tmp_path / "in.csv", rows())
    code, _, err = builder(
        "filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--phash-column", "phash", "--max-distance", "4"
    )
    assert code == 1 and "partner feed" in err
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_column_writes_nothing(pulled, builder, tmp_path):
    pulled()
    write_csv(tmp_path / "in.csv", rows())
    code, _, err = builder("filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--url-column", "URL")
    assert code == 1 and "no column 'URL'" in err
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


# --- Fail closed ----------------------------------------------------------------------------------------


def test_filter_and_check_refuse_without_a_state(builder, tmp_path):
    write_csv(tmp_path / "in.csv", rows())
    code, out, err = builder("filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert (code, out) == (1, "") and "no blocklist in" in err
    assert not (tmp_path / "out.csv").exists()
    code, out, err = builder("check", CLEAN[0])
    assert (code, out) == (1, "") and "no blocklist in" in err
    code, out, err = builder("status")
    assert code == 1 and "run `optout-client pull` first" in err


@pytest.fixture
def expired(mirror, publish, builder, signing_key, settings):
    """A state whose release has expired since it was pulled."""
    settings.OPTOUT_RELEASE_TTL_HOURS = -1
    holds.hold(holder="item:1", url_sha256=canonical.url_sha256(BLOCKED_URL))
    publish()
    mirror.sync()
    pubkey = signing_key.public_key.to_base64()
    pull(mirror.base(), state_dir=builder.state_dir, pubkey=pubkey, now=datetime.now(UTC) - timedelta(hours=3))


def test_filter_refuses_an_expired_state_unless_told_loudly(expired, builder, tmp_path):
    write_csv(tmp_path / "in.csv", rows())
    code, out, err = builder("filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert (code, out) == (1, "") and "expired at" in err
    assert not (tmp_path / "out.csv").exists()
    code, out, err = builder("check", CLEAN[0])
    assert code == 1 and "expired at" in err

    code, out, err = builder(
        "filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--i-accept-an-expired-blocklist"
    )
    assert code == 0
    assert "WARNING" in err and "EXPIRED" in err
    assert [row["url"] for row in read_csv(tmp_path / "out.csv")] == ["https://mirror.example.com/copy.jpg", *CLEAN]

    code, out, _ = builder("status")
    assert code == 1 and "expired: filter and check refuse it" in out


def test_a_state_changed_on_disk_is_refused(pulled, builder, tmp_path):
    pulled()
    current = state.read_current(builder.state_dir)
    (builder.state_dir / current.generation / "sha256.bin").write_bytes(b"")
    code, out, err = builder("check", CLEAN[0])
    assert (code, out) == (1, "") and "changed since it was verified" in err


def test_a_state_whose_keys_differ_from_the_signed_manifest_is_refused(pulled, builder, tmp_path):
    pulled()
    current = state.read_current(builder.state_dir)
    urls = builder.state_dir / current.generation / "urls.bin"
    urls.write_bytes(b"\0" * 32)
    current.files["urls.bin"] = state.sha256_file(urls)  # as if current.json had been rewritten too
    state.write_atomic(builder.state_dir / state.CURRENT, current.to_json())
    code, _, err = builder("check", CLEAN[0])
    assert code == 1 and "do not match the signed manifest" in err


# --- check, hash-url, status ----------------------------------------------------------------------------


def test_check_says_which_urls_are_blocked(pulled, builder):
    pulled()
    code, out, err = builder("check", BLOCKED_SPELLINGS[0], CLEAN[0])
    assert code == 3
    assert out == f"blocked\t{BLOCKED_SPELLINGS[0]}\nnot blocked\t{CLEAN[0]}\n"
    code, out, _ = builder("check", CLEAN[1])
    assert (code, out) == (0, f"not blocked\t{CLEAN[1]}\n")


def test_hash_url_prints_the_shared_canonical_form(builder):
    code, out, err = builder("hash-url", *BLOCKED_SPELLINGS)
    assert code == 0
    expected = canonical.url_sha256(BLOCKED_URL)
    assert out == f"{expected}  {BLOCKED_URL}\n" * 3
    code, out, err = builder("hash-url", "http:///x")
    assert code == 1 and "not a web URL (the URL has no host)" in err
    code, out, err = builder("hash-url", "javascript:alert(1)")
    assert (code, out) == (1, "") and "the scheme is 'javascript', not http(s)" in err and "port" not in err
    code, out, err = builder("hash-url", "not a url at all")
    assert (code, out) == (1, "") and "the host is not a host name or an IP address" in err


def test_status_describes_the_state(pulled, builder, signing_key):
    pulled()
    code, out, err = builder("status")
    assert code == 0, err
    assert "feed:     optout-public at http://127.0.0.1:" in out
    assert "version:  1 (created " in out
    assert "entries:  10\n" in out  # one key and its nine decoys
    assert f"key id:   {signing_key.public_key.key_id_hex}\n" in out
    assert "verified: yes\n" in out


def test_the_client_imports_without_django():
    code = (
        "import sys, optout.client.__main__ as m, optout.client.cli, optout.client.pull, optout.client.filter; "
        "bad = sorted(n for n in sys.modules if n.startswith('django') or (n.startswith('optout.') and not n.startswith('optout.client'))); "
        "print(bad)"
    )
    # Importing __main__ runs main(): give it --help so it exits after importing everything.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code.replace("optout.client.__main__ as m, ", "")
            + "; sys.argv=['x','--help']; import optout.client.__main__",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.splitlines()[0] == "[]", result.stderr
    assert "pull" in result.stdout


# --- Reports, bad rows, many files ----------------------------------------------------------------------


def test_the_report_names_each_dropped_row_and_its_rule(pulled, builder, tmp_path):
    pulled()
    data = rows() + [{"url": "not a url at all", "sha256": "", "phash": "", "caption": "junk"}]
    write_csv(tmp_path / "in.csv", data)
    args = ["--sha256-column", "sha256", "--report", tmp_path / "dropped.csv", "--batch-rows", "3"]
    code, out, err = builder("filter", tmp_path / "in.csv", "--out", tmp_path / "out.csv", *args)
    assert code == 0, err
    report = read_csv(tmp_path / "dropped.csv")
    assert [(row["row"], row["rule"]) for row in report] == [
        ("0", "url"),
        ("1", "url"),
        ("2", "url"),
        ("3", "sha256"),
        ("7", "bad_url"),
        ("8", "bad_url"),
    ]
    assert {row["file"] for row in report} == {str(tmp_path / "in.csv")}
    assert "not a url at all" not in (tmp_path / "out.csv").read_text()
    assert "bad_url 2" in out


def test_a_jsonl_line_that_is_not_an_object_is_reported_as_a_bad_row(pulled, builder, tmp_path):
    pulled()
    (tmp_path / "in.jsonl").write_bytes(
        b'{"url": "https://cdn.example.net/ok/1.jpg"}\n[1, 2]\n{"url": "%s"}\n' % BLOCKED_URL.encode()
    )
    args = ["--report", tmp_path / "dropped.csv"]
    code, out, err = builder("filter", tmp_path / "in.jsonl", "--out", tmp_path / "out.jsonl", *args)
    assert code == 0, err
    assert [(row["row"], row["rule"]) for row in read_csv(tmp_path / "dropped.csv")] == [("1", "bad_row"), ("2", "url")]
    assert read_jsonl(tmp_path / "out.jsonl") == [{"url": "https://cdn.example.net/ok/1.jpg"}]


def test_a_folder_of_shards_is_filtered_by_worker_processes(pulled, builder, tmp_path):
    pulled()
    shards = tmp_path / "shards"
    shards.mkdir()
    for number in range(3):
        pq.write_table(pa.Table.from_pylist(rows()), shards / f"part-{number:05d}.parquet")
    (shards / "README.txt").write_text("not a shard")
    args = ["--sha256-column", "sha256", "--jobs", "2", "--report", tmp_path / "dropped.csv"]
    code, out, err = builder("filter", shards, "--out", tmp_path / "clean", *args)
    assert code == 0, err
    assert out.startswith("24 rows read, 9 kept, 15 dropped (url 9, sha256 3, phash 0, pdq 0, bad_url 3, bad_row 0)")
    for number in range(3):
        assert pq.read_table(tmp_path / "clean" / f"part-{number:05d}.parquet").column("url").to_pylist() == CLEAN
    assert len(read_csv(tmp_path / "dropped.csv")) == 15
    # A glob names the same shards.
    code, out, err = builder("filter", str(shards / "part-*.parquet"), "--out", tmp_path / "clean2")
    assert code == 0 and out.startswith("24 rows read")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_folder_of_small_shards_shares_its_near_duplicate_lookups(pulled, builder, tmp_path, jobs):
    pulled("partner")
    shards = tmp_path / "shards"
    shards.mkdir()
    for number in range(5):
        pq.write_table(pa.Table.from_pylist(rows()), shards / f"part-{number:05d}.parquet")
    args = ["--phash-column", "phash", "--max-distance", "8", "--sha256-column", "sha256", "--jobs", jobs]
    code, out, err = builder("filter", shards, "--out", tmp_path / "clean", *args, "--report", tmp_path / "dropped.csv")
    assert code == 0, err
    assert out.startswith("40 rows read, 10 kept, 30 dropped (url 15, sha256 5, phash 5, pdq 0, bad_url 5, bad_row 0)")
    for number in range(5):
        assert pq.read_table(tmp_path / "clean" / f"part-{number:05d}.parquet").column("url").to_pylist() == CLEAN[1:]
    dropped = read_csv(tmp_path / "dropped.csv")
    assert sorted((row["file"].rsplit("/", 1)[1], row["row"]) for row in dropped if row["rule"] == "phash") == [
        (f"part-{number:05d}.parquet", "4") for number in range(5)
    ]


def test_only_the_processes_that_filter_build_the_rules(pulled, builder, tmp_path, monkeypatch):
    """With --jobs the workers build the rules (a near-duplicate index can take hundreds of MB), the parent
    does not; with one job the parent filters, and builds them once."""
    from optout.client import batch, cli

    pulled()
    shards = tmp_path / "shards"
    shards.mkdir()
    for number in range(2):
        pq.write_table(pa.Table.from_pylist(rows()), shards / f"part-{number:05d}.parquet")
    built = []
    monkeypatch.setattr(cli, "Rules", lambda *args, **kwargs: built.append(1) or batch.Rules(*args, **kwargs))
    for jobs, parent_builds in (("2", []), ("1", [1])):
        code, out, err = builder("filter", shards, "--out", tmp_path / f"clean-{jobs}", "--jobs", jobs)
        assert code == 0, err
        assert out.startswith("16 rows read, 8 kept") and built == parent_builds


def test_a_worker_holding_another_release_refuses(pulled, builder, tmp_path, trust_dir):
    from optout.client import shards as filtering
    from optout.client.batch import Columns, WrongRelease

    pulled()
    job = filtering.Job(
        state_dir=builder.state_dir,
        trust_dir=trust_dir,
        allow_expired=False,
        release="0" * 64,  # what the driver verified: not what this state holds
        max_distance=None,
        max_pdq_distance=None,
        columns=Columns(),
        batch_rows=10,
    )
    with pytest.raises(WrongRelease, match="refusing to filter with another blocklist"):
        filtering._start_worker(job)


# --- Partners: decoy drops apart -------------------------------------------------------------------------


@pytest.fixture
def both_tiers(mirror, publish, builder, signing_key, tmp_path):
    """A dataset of 30 rows on one host, one of them blocked (its nine decoys are rows of the same host), the
    release published, and both tiers pulled: the public one into the default state, the partner one beside it.
    Returns (the dataset's URLs, the blocked one, the partner state)."""
    from optout.models import Dataset, DatasetRow

    dataset = Dataset.objects.create(name="laion-mini", release="2026-01")
    urls = [f"https://big.example.com/photos/{i:05d}.jpg" for i in range(30)]
    DatasetRow.objects.bulk_create(
        [DatasetRow(dataset=dataset, url=url, url_sha256=canonical.url_sha256(url)) for url in urls]
    )
    holds.hold(holder="item:1", url_sha256=canonical.url_sha256(urls[7]), image_sha256=SHA_BLOCKED)
    publish()
    mirror.sync()
    partner_state = tmp_path / "partner-state"
    pubkey = signing_key.public_key.to_base64()
    for base, where in ((mirror.base("public"), builder.state_dir), (mirror.base("partner"), partner_state)):
        code, _, err = builder("pull", "--feed", base, "--pubkey", pubkey, "--state", where)
        assert code == 0, err
    return urls, urls[7], partner_state


def test_a_partner_sees_decoy_drops_apart(both_tiers, builder, tmp_path):
    urls, blocked, partner_state = both_tiers
    data = [{"url": url, "sha256": "cd" * 32} for url in urls] + [
        {"url": "https://elsewhere.example/x.jpg", "sha256": SHA_BLOCKED}
    ]
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "in.parquet")
    args = ["--sha256-column", "sha256", "--report", tmp_path / "dropped.csv"]

    code, out, err = builder("filter", tmp_path / "in.parquet", "--out", tmp_path / "public.parquet", *args)
    assert code == 0, err
    assert out.startswith("31 rows read, 20 kept, 11 dropped (url 10, sha256 1, phash 0, pdq 0, bad_url 0, bad_row 0);")
    assert "decoy" not in out  # a public-only client cannot know

    told = ["--partner-state", partner_state]
    code, out, err = builder("filter", tmp_path / "in.parquet", "--out", tmp_path / "told.parquet", *args, *told)
    assert code == 0, err
    assert out.startswith(
        "31 rows read, 20 kept, 11 dropped (url 1, sha256 1, phash 0, pdq 0, bad_url 0, bad_row 0, decoy 9); "
        "2 of the dropped rows are real entries and 9 decoys only"
    )
    # The same rows go: the rules are the public tier's.
    assert pq.read_table(tmp_path / "told.parquet").equals(pq.read_table(tmp_path / "public.parquet"))
    report = read_csv(tmp_path / "dropped.csv")
    assert [row["rule"] for row in report].count("decoy") == 9
    assert {urls[int(row["row"])] for row in report if row["rule"] == "url"} == {blocked}

    # Shards in worker processes count the same.
    shards = tmp_path / "shards"
    shards.mkdir()
    for number, start in enumerate(range(0, 31, 11)):
        pq.write_table(pa.Table.from_pylist(data[start : start + 11]), shards / f"part-{number}.parquet")
    code, out, err = builder("filter", shards, "--out", tmp_path / "clean", "--jobs", "2", *args, *told)
    assert code == 0, err
    assert "2 of the dropped rows are real entries and 9 decoys only" in out

    # To drop only real entries, filter with the exact partner tier itself.
    code, out, err = builder(
        "filter",
        tmp_path / "in.parquet",
        "--out",
        tmp_path / "real.parquet",
        "--state",
        partner_state,
        "--sha256-column",
        "sha256",
    )
    assert code == 0, err
    assert out.startswith("31 rows read, 29 kept, 2 dropped (url 1, sha256 1,")

    group = set(decoy_group(canonical.url_sha256(blocked)))
    decoy = next(url for url in urls if url != blocked and canonical.url_sha256(url) in group)
    code, out, _ = builder("check", blocked, decoy, *told)
    assert (code, out) == (3, f"blocked\t{blocked}\nblocked (decoy only)\t{decoy}\n")
    code, out, _ = builder("check", blocked, decoy)
    assert (code, out) == (3, f"blocked\t{blocked}\nblocked\t{decoy}\n")


def test_decoys_are_told_apart_only_against_the_partner_tier_of_the_same_release(
    both_tiers, builder, tmp_path, publish, mirror
):
    urls, blocked, partner_state = both_tiers
    write_csv(tmp_path / "in.csv", [{"url": url} for url in urls])
    out_args = ["--out", tmp_path / "out.csv"]
    code, _, err = builder("filter", tmp_path / "in.csv", *out_args, "--partner-state", builder.state_dir)
    assert code == 1 and "--partner-state must hold the partner tier, not the public tier" in err
    code, _, err = builder(
        "filter", tmp_path / "in.csv", *out_args, "--state", partner_state, "--partner-state", partner_state
    )
    assert code == 1 and "--state holds the partner tier" in err

    holds.hold(holder="item:2", url_sha256=canonical.url_sha256(urls[20]))
    publish()
    mirror.sync()
    code, _, err = builder("pull", "--feed", mirror.base("public"))
    assert code == 0, err
    code, _, err = builder("filter", tmp_path / "in.csv", *out_args, "--partner-state", partner_state)
    assert code == 1 and "--partner-state holds optout-partner version 1 (built " in err
    assert "--state optout-public version 2 (built " in err and "pull both tiers of the same release" in err
    assert not (tmp_path / "out.csv").exists()


def test_a_partner_tier_of_the_same_version_but_another_release_is_refused():
    """Two feeds (two operators, or a feed rebuilt from scratch) can both be at version 1: the tiers of one
    release also share the moment it was built, whatever the feeds are called."""
    public, partner = make_blocklist(), make_blocklist()
    public.current = replace(public.current, tier="public", feed="another-name", created="2026-12-02T10:00:00Z")
    partner.current = replace(partner.current, created="2026-12-02T10:00:00Z")
    state.require_partner(public, partner)  # the same release, even under another feed name
    partner.current = replace(partner.current, created="2026-12-01T09:00:00Z")
    with pytest.raises(state.StateError, match="pull both tiers of the same release"):
        state.require_partner(public, partner)


def test_the_output_compresses_the_columns_that_compression_shrank_in_the_input(tmp_path):
    from optout.client.batch import Columns, Rules
    from optout.client.filter import filter_file

    urls = [f"https://cdn.example.net/ok/{i}.jpg" for i in range(5000)]
    table = pa.table({"url": urls, "sha256": [hashlib.sha256(url.encode()).hexdigest() for url in urls]})
    pq.write_table(table, tmp_path / "in.parquet")  # Snappy, pyarrow's default: it shrinks the URLs, not the hex
    rules = Rules(make_blocklist(urls=urls[:1]))
    counts = filter_file(rules, tmp_path / "in.parquet", tmp_path / "out.parquet", columns=Columns(sha256="sha256"))
    assert (counts.read, counts.kept) == (5000, 4999)
    chunks = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    codecs = {chunks.column(i).path_in_schema: chunks.column(i).compression for i in range(chunks.num_columns)}
    assert codecs == {"url": "SNAPPY", "sha256": "UNCOMPRESSED"}
    assert pq.read_table(tmp_path / "out.parquet").equals(table.slice(1))
    # An input written uncompressed tells nothing of what compression does: its output gets Snappy throughout.
    pq.write_table(table, tmp_path / "raw.parquet", compression="none")
    filter_file(rules, tmp_path / "raw.parquet", tmp_path / "raw-out.parquet", columns=Columns(sha256="sha256"))
    chunks = pq.ParquetFile(tmp_path / "raw-out.parquet").metadata.row_group(0)
    assert {chunks.column(i).compression for i in range(chunks.num_columns)} == {"SNAPPY"}


def test_a_parquet_file_damaged_after_its_first_row_group_fails_whole_and_writes_nothing(tmp_path):
    """The footer reads fine and the first row groups filter; a damaged one further on (read by the I/O thread
    while the first is judged) fails the file with the row it got to, and neither output nor part file is left."""
    from optout.client.batch import Columns, Rules
    from optout.client.filter import FilterError, filter_file

    urls = [f"https://cdn.example.net/ok/{i}.jpg" for i in range(3000)]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": urls}), source, row_group_size=1000, compression="none")
    column = pq.ParquetFile(source).metadata.row_group(2).column(0)
    with open(source, "r+b") as handle:  # the third row group's page header and the start of its data: garbage
        handle.seek(column.data_page_offset)
        handle.write(b"\xff" * 64)
    rules = Rules(make_blocklist(urls=urls[:1]))
    with pytest.raises(FilterError, match=r"in\.parquet is unreadable after row 2,000"):
        filter_file(rules, source, tmp_path / "out.parquet", columns=Columns(), batch_rows=1000)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.parquet"]


def test_workers_share_the_cpus_for_their_lookup_threads(monkeypatch):
    from optout.client import nearby
    from optout.client import shards as filtering
    from optout.client.batch import Columns

    monkeypatch.setattr(nearby, "available_cpus", lambda: 8)
    job = filtering.Job(Path("state"), None, False, "0" * 64, 8, None, Columns(phash="phash"))
    assert [filtering._sharing(job, jobs).threads for jobs in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert filtering._sharing(replace(job, threads=3), 2).threads == 3  # --threads wins


@pytest.mark.parametrize(
    ("option", "value", "minimum"),
    [
        ("--jobs", "0", 1),
        ("--jobs", "two", 1),
        ("--threads", "-2", 1),
        ("--max-distance", "-1", 0),
        ("--max-pdq-distance", "8.5", 0),
    ],
)
def test_counts_and_distances_are_whole_numbers(builder, tmp_path, capsys, option, value, minimum):
    with pytest.raises(SystemExit) as exit_:
        builder("filter", tmp_path / "in.parquet", "--out", tmp_path / "out.parquet", option, value)
    assert exit_.value.code == 2
    assert f"a whole number of at least {minimum}, not '{value}'" in capsys.readouterr().err
