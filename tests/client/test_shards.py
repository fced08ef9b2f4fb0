"""A folder of small shards: runs of files that share their near-duplicate lookups give what each file gives alone."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.client import nearby
from optout.client.batch import Columns, Rules
from optout.client.filter import FilterError, filter_file
from optout.client.shards import Job, filter_many, groups
from tests.client.blocklists import make_blocklist

BLOCKED_URL = "https://images.example.org/private/a.jpg"
COLUMNS = Columns(phash="phash", pdq="pdq")


def _job(batch_rows: int = 1 << 20, *, distances: bool = True) -> Job:
    return Job(
        state_dir=Path("unused"),  # rules are given: no worker loads a state
        trust_dir=None,
        allow_expired=False,
        release="",
        max_distance=6 if distances else None,
        max_pdq_distance=20 if distances else None,
        columns=COLUMNS,
        batch_rows=batch_rows,
    )


@pytest.fixture(scope="module")
def blocked():
    rng = np.random.default_rng(5)
    phashes = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    pdqs = [int.from_bytes(rng.bytes(32), "big") for _ in range(300)]
    return phashes, pdqs


@pytest.fixture(scope="module")
def rules(blocked):
    phashes, pdqs = blocked
    blocklist = make_blocklist(urls=[BLOCKED_URL], phashes=[int(v) for v in phashes], pdqs=pdqs)
    return Rules(blocklist, max_distance=6, max_pdq_distance=20)


def _shard(path: Path, rng, blocked, rows: int, *, int_phash: bool = False) -> None:
    """Rows of which about a third are near a blocked pHash, a third near a blocked PDQ hash, and some blocked by
    URL; some hashes missing."""
    phashes, pdqs = blocked
    phash = rng.integers(0, 2**64, size=rows, dtype=np.uint64)
    near = rng.random(rows) < 0.3
    flips = np.uint64(1) << rng.integers(0, 64, size=rows).astype(np.uint64)
    phash[near] = phashes[rng.integers(0, len(phashes), size=int(near.sum()))] ^ flips[near]
    pdq = [rng.bytes(32).hex() for _ in range(rows)]
    for row in np.flatnonzero(rng.random(rows) < 0.3):
        pdq[row] = f"{pdqs[rng.integers(0, len(pdqs))] ^ (1 << int(rng.integers(0, 256))):064x}"
    missing = rng.random(rows) < 0.1
    urls = [BLOCKED_URL if rng.random() < 0.1 else f"https://cdn.example.net/{path.stem}/{i}.jpg" for i in range(rows)]
    phash_column = (
        pa.array(phash.view(np.int64), mask=missing)
        if int_phash
        else pa.array([f"{v:016x}" for v in phash.tolist()], mask=missing)
    )
    pdq_column = pa.array(pdq, mask=np.roll(missing, 1))
    pq.write_table(pa.table({"url": urls, "phash": phash_column, "pdq": pdq_column}), path, row_group_size=40)


@pytest.fixture
def folder(tmp_path, blocked):
    rng = np.random.default_rng(11)
    shards = tmp_path / "shards"
    shards.mkdir()
    for number, rows in enumerate([90, 1, 130, 57, 200, 75]):
        _shard(shards / f"part-{number:05d}.parquet", rng, blocked, rows, int_phash=number == 3)
    return shards


def _outputs(folder: Path) -> dict[str, list[dict]]:
    return {path.name: pq.read_table(path).to_pylist() for path in sorted(folder.iterdir())}


def test_runs_of_small_files_give_what_each_file_gives_alone(rules, folder, tmp_path):
    sources = sorted(folder.iterdir())
    alone = tmp_path / "alone"
    totals = [filter_file(rules, source, alone / source.name, columns=COLUMNS, batch_rows=64) for source in sources]
    job = _job(batch_rows=300)  # runs of up to 300 rows, of files of up to 150: the file of 200 rows is alone
    assert [len(run) for run in groups(sources, job)] == [4, 1, 1]
    seen = []
    counts = filter_many(rules, job, sources, tmp_path / "together", jobs=1, on_file=lambda s, t: seen.append(s))
    assert _outputs(tmp_path / "together") == _outputs(alone)
    assert seen == sources
    assert counts.read == sum(t.read for t in totals) == 553
    assert counts.by_reason == {reason: sum(t.by_reason[reason] for t in totals) for reason in counts.by_reason}
    assert counts.by_reason["phash"] > 50 and counts.by_reason["pdq"] > 50 and counts.by_reason["url"] > 20


def test_a_run_looks_its_rows_up_once_per_index(rules, folder, tmp_path, monkeypatch):
    calls = []
    real = nearby._Index.near
    monkeypatch.setattr(nearby._Index, "near", lambda self, queries: calls.append(len(queries)) or real(self, queries))
    filter_many(rules, _job(), sorted(folder.iterdir()), tmp_path / "out", jobs=1)
    assert len(calls) == 2  # one pHash lookup, one PDQ lookup, for the six files
    assert sum(calls) > 2 * 553 * 0.8  # every row with a hash (about 10% have none)


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_runs_are_cut_so_that_every_worker_gets_one(folder, jobs):
    runs = groups(sorted(folder.iterdir()), _job(), jobs)
    assert len(runs) == jobs
    assert [source for run in runs for source in run] == sorted(folder.iterdir())


def test_only_small_parquet_files_share_a_run(folder, tmp_path):
    sources = sorted(folder.iterdir())
    (tmp_path / "rows.csv").write_text("url\nhttps://cdn.example.net/1.jpg\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    mixed = [*sources[:2], tmp_path / "rows.csv", tmp_path / "broken.parquet", *sources[2:]]
    # Half a batch of 200 rows: the files of 130 and 200 rows are too big to share a run, and cut the others'.
    runs = groups(mixed, _job(batch_rows=200))
    assert [[path.name for path in run] for run in runs] == [
        ["part-00000.parquet", "part-00001.parquet"],
        ["rows.csv"],
        ["broken.parquet"],
        ["part-00002.parquet"],
        ["part-00003.parquet"],
        ["part-00004.parquet"],
        ["part-00005.parquet"],
    ]
    assert groups(mixed, _job(distances=False)) == [[path] for path in mixed]


def test_a_damaged_file_in_a_run_fails_as_it_would_alone_and_writes_nothing(rules, folder, tmp_path):
    sources = sorted(folder.iterdir())
    damaged = sources[1]
    damaged.write_bytes(damaged.read_bytes()[:-40])  # the footer is gone
    with pytest.raises(FilterError, match="not a readable Parquet file"):
        filter_many(rules, _job(), sources, tmp_path / "out", jobs=1)
    assert not (tmp_path / "out" / damaged.name).exists()


def test_a_file_without_the_hash_column_in_a_run_is_refused_by_name(rules, folder, tmp_path):
    sources = sorted(folder.iterdir())
    pq.write_table(pq.read_table(sources[0]).drop_columns(["pdq"]), sources[0])
    with pytest.raises(FilterError, match="no column 'pdq'"):
        filter_many(rules, _job(), sources, tmp_path / "out", jobs=1)


def test_answers_for_another_number_of_rows_are_refused(rules, folder, tmp_path):
    source = sorted(folder.iterdir())[0]
    (wrong,) = rules.near([pq.read_table(source).slice(1)], COLUMNS)
    with pytest.raises(ValueError, match="another number of rows"):
        filter_file(rules, source, tmp_path / "out.parquet", columns=COLUMNS, near=wrong)


def test_a_files_first_batch_is_looked_up_from_its_hash_columns_while_the_rest_is_read(
    rules, folder, tmp_path, monkeypatch
):
    source = sorted(folder.iterdir())[4]  # 200 rows in row groups of 40
    whole = pq.read_table(source).combine_chunks().to_batches()[0]
    expected = rules.filter(whole, COLUMNS).to_pylist()
    early = []
    real = Rules.near
    monkeypatch.setattr(
        Rules, "near", lambda self, tables, columns: early.append(tables) or real(self, tables, columns)
    )
    for batch_rows in (64, 1 << 20):  # the first of several batches, and the only one
        early.clear()
        filter_file(rules, source, tmp_path / "out.parquet", columns=COLUMNS, batch_rows=batch_rows)
        assert pq.read_table(tmp_path / "out.parquet").to_pylist() == expected
        assert len(early) == -(-200 // batch_rows)  # one lookup a batch
        ((head,), *later) = early
        assert head.schema.names == ["phash", "pdq"] and head.num_rows == min(batch_rows, 200)
        assert all(tables[0].schema.names == ["url", "phash", "pdq"] for tables in later)  # beside their reading
