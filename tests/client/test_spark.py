"""The filter inside Spark: ``adapters.spark_filter`` on PySpark in local mode over a folder of Parquet shards.

One JVM for the module (local[2]: two executor threads, each with its own Python
worker). The job fails closed when a worker holds another release than the one
the driver verified.
"""

import logging
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.blocklist import holds
from optout.client import adapters, batch, state
from optout.client.canonical import url_sha256
from optout.client.filter import NEAR_BATCH_ROWS, FilterError
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.django_db

BLOCKED = "https://images.example.org/private/a.jpg"
LATER = "https://images.example.org/private/later.jpg"
SHA_BLOCKED = "ab" * 32
PHASH_BLOCKED = 0xF0F0_F0F0_0F0F_0F0F
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None or not _importable("pyspark"):
        if REQUIRE_SERVICES:
            pytest.fail("the Spark tests need a JVM and pyspark (.ci/run installs Debian's OpenJDK)")
        pytest.skip("needs java and pyspark")
    from pyspark.sql import SparkSession

    # The Python workers are new processes: they must find this checkout and use this interpreter. The JVM
    # takes the environment when it starts; later tests' subprocesses get the one they had.
    saved = {name: os.environ.get(name) for name in ("PYSPARK_PYTHON", "PYTHONPATH")}
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    try:
        session = (
            SparkSession.builder.master("local[2]")
            .appName("optout-client-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.files.openCostInBytes", "1")  # one partition per small shard: both workers get some
            .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -Xss4m")
            .getOrCreate()
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its connections close at exit, after pytest's streams


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def shards(folder: Path, count: int = 4, rows: int = 50, *, phash: bool = False) -> pa.Table:
    """``count`` Parquet shards of ``rows`` rows, some blocked by URL (spelled otherwise), by sha256, or bad URLs;
    with ``phash``, a pHash column where two rows are within 8 bits of ``PHASH_BLOCKED`` and one is 9 bits away."""
    folder.mkdir()
    tables = []
    for number in range(count):
        ids = list(range(number * rows, (number + 1) * rows))
        urls = [f"https://cdn.example.net/{number}/{i}.jpg" for i in ids]
        shas = [f"{i:064x}" for i in ids]
        urls[3] = "HTTPS://Images.Example.org:443/private/a.jpg"
        urls[7] = "not a url"
        urls[9] = LATER
        shas[11] = SHA_BLOCKED.upper()
        table = pa.table({"id": pa.array(ids, pa.int64()), "url": urls, "sha256": shas, "caption": ["c"] * rows})
        if phash:
            values = [f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in ids]
            values[20], values[41] = f"{PHASH_BLOCKED ^ 0xFF:016x}", f"{PHASH_BLOCKED ^ 0x1:016x}"
            values[33] = f"{PHASH_BLOCKED ^ 0x1FF:016x}"
            table = table.append_column("phash", pa.array(values))
        pq.write_table(table, folder / f"part-{number:05d}.parquet")
        tables.append(table)
    return pa.concat_tables(tables)


@pytest.fixture
def pulled(mirror, publish, builder, signing_key):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED), image_sha256=SHA_BLOCKED)
    publish()
    mirror.sync()

    def pull():
        code, out, err = builder("pull", "--feed", mirror.base(), "--pubkey", signing_key.public_key.to_base64())
        assert code == 0, err

    pull()
    return pull


def test_spark_drops_what_the_per_row_reference_drops(spark, pulled, builder, tmp_path):
    data = shards(tmp_path / "shards")
    columns = batch.Columns(url="url", sha256="sha256")
    job = adapters.spark_job(builder.state_dir, columns)
    frame = spark.read.parquet(str(tmp_path / "shards"))
    assert frame.rdd.getNumPartitions() >= 2
    clean = adapters.spark_filter(frame, job)
    clean.write.parquet(str(tmp_path / "clean"))

    kept = sorted(row.id for row in spark.read.parquet(str(tmp_path / "clean")).select("id").collect())
    reference = batch.reference_keep(state.load(builder.state_dir), data.combine_chunks().to_batches()[0], columns)
    expected = sorted(i for i, reason in zip(data.column("id").to_pylist(), reference, strict=True) if reason == -1)
    assert kept == expected
    assert len(kept) == len(data) - 4 * 3  # per shard: the blocked URL, the bad URL, the blocked sha256
    assert spark.read.parquet(str(tmp_path / "clean")).schema == frame.schema  # what was written, column for column


def test_spark_drops_near_duplicates_looked_up_for_runs_of_batches(
    spark, mirror, publish, builder, signing_key, tmp_path
):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED), image_sha256=SHA_BLOCKED, phash=PHASH_BLOCKED)
    publish()
    mirror.sync()
    code, _, err = builder("pull", "--feed", mirror.base("partner"), "--pubkey", signing_key.public_key.to_base64())
    assert code == 0, err
    data = shards(tmp_path / "shards", rows=60, phash=True)
    columns = batch.Columns(url="url", sha256="sha256", phash="phash")
    job = adapters.spark_job(builder.state_dir, columns, max_distance=8)
    assert job.batch_rows == NEAR_BATCH_ROWS
    job = replace(job, batch_rows=50)  # with batches of 16 rows: runs of four batches, and a shorter last one
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        clean = adapters.spark_filter(spark.read.parquet(str(tmp_path / "shards")), job)
        kept = sorted(row.id for row in clean.select("id").collect())
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    record = data.combine_chunks().to_batches()[0]
    reference = batch.reference_keep(state.load(builder.state_dir), record, columns, max_distance=8)
    expected = sorted(i for i, reason in zip(data.column("id").to_pylist(), reference, strict=True) if reason == -1)
    assert kept == expected
    assert len(kept) == len(data) - 4 * 5  # per shard: blocked URL, bad URL, blocked sha256, two near pHashes


def test_a_worker_holding_another_release_fails_the_job(spark, pulled, builder, tmp_path, publish, mirror):
    shards(tmp_path / "shards")
    job = adapters.spark_job(builder.state_dir, batch.Columns(url="url"))
    # Between the driver's check and the workers' start, a pull moves the state to the next release.
    holds.hold(holder="item:2", url_sha256=url_sha256(LATER))
    publish()
    mirror.sync()
    pulled()
    assert state.load(builder.state_dir).current.manifest_sha256 != job.release
    clean = adapters.spark_filter(spark.read.parquet(str(tmp_path / "shards")), job)
    with pytest.raises(Exception, match="refusing to filter with another blocklist than the one verified"):
        clean.write.parquet(str(tmp_path / "clean"))
    assert not (tmp_path / "clean" / "_SUCCESS").exists()


def test_the_driver_refuses_a_distance_without_partner_hashes(pulled, builder):
    with pytest.raises(FilterError, match="no phash hashes"):
        adapters.spark_job(builder.state_dir, batch.Columns(url="url", phash="phash"), max_distance=4)
