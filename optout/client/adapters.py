"""Thin adapters that run ``batch.Rules`` inside other engines; each imports its engine only when called.

Hugging Face ``datasets``::

    from optout.client import adapters, state
    from optout.client.batch import Columns, Rules

    rules = Rules(state.load(state_dir))
    clean = dataset.with_format("arrow").filter(
        adapters.datasets_predicate(rules, Columns(url="url", sha256="sha256")), batched=True
    )

The predicate takes a batch as ``datasets`` gives it (an Arrow table with
``with_format("arrow")``, else a dict of columns) and returns which rows to keep.
With near-duplicate distances, give ``filter`` a large ``batch_size``
(``filter.NEAR_BATCH_ROWS``): each batch makes its own lookups, whose fixed cost
datasets' default of 1,000 rows pays over and over.
``datasets`` may run it in worker processes (``num_proc``): the rules travel with
it, pinned to the release they were built from.

Spark (``DataFrame.mapInArrow``)::

    from optout.client import adapters
    from optout.client.batch import Columns

    job = adapters.spark_job(state_dir, Columns(url="url"))  # verified here, on the driver
    clean = adapters.spark_filter(spark.read.parquet("shards/"), job)
    clean.write.parquet("clean/")

With distances, a task's Arrow batches (10,000 rows each, Spark's default) are
looked up in runs of ``NEAR_BATCH_ROWS`` rows.

``spark_job`` loads and verifies the state on the driver and names its release
(the manifest's sha256). Each Python worker loads the state itself, from the
same path (a shared filesystem, or a copy each node pulled), and refuses to
filter unless it holds that very release: a worker that sees another one (a
pull switched it meanwhile, a node pulled a newer or older version) raises
``WrongRelease``, which fails the task and so the job. Nothing is filtered
with a blocklist the driver did not verify.

Hash-sharing export: ``hash_lines`` writes the partner tier's PDQ hashes as the
line format that ThreatExchange's tools and Meta's hasher-matcher-actioner
import, one ``pdq <64 hex digits>`` per line (the ``pdq`` signal type's name and
its string form). pHashes have no signal type there and are left out.
"""

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa

from optout.client import state
from optout.client.batch import KEPT, Columns, Rules
from optout.client.filter import batch_rows_for, require_algorithms, require_columns
from optout.client.shards import Job
from optout.client.state import Blocklist


def datasets_predicate(rules: Rules, columns: Columns):
    """A ``Dataset.filter(..., batched=True)`` function: True for the rows ``rules`` keep."""
    names = [name for name in (columns.url, columns.sha256, columns.phash, columns.pdq) if name]

    def keep(batch) -> list[bool]:
        if isinstance(batch, pa.Table):
            record = pa.record_batch([batch.column(name).combine_chunks() for name in names], names=names)
        else:
            record = pa.record_batch({name: pa.array(batch[name]) for name in names})
        return (rules.keep(record, columns)[0] == KEPT).tolist()

    return keep


def spark_job(
    state_dir: Path,
    columns: Columns,
    *,
    trust_dir: Path | None = None,
    max_distance: int | None = None,
    max_pdq_distance: int | None = None,
    allow_expired: bool = False,
    threads: int | None = 1,
) -> Job:
    """Verify the state on the driver; the job names the release every worker must hold.

    ``threads``: near-duplicate lookup threads of each Spark task; one, since Spark runs a task on each core
    already (None: one per CPU of the worker).

    Raises ``state.StateError`` (missing, tampered with, expired) or ``FilterError`` (a distance
    without the column that carries its hash, or without the partner feed's hashes).
    """
    require_columns(columns, max_distance=max_distance, max_pdq_distance=max_pdq_distance)
    state_dir = Path(state_dir).resolve()
    trust_dir = Path(trust_dir or state.default_trust_dir()).resolve()  # the workers' environment may differ
    blocklist = state.load(state_dir, allow_expired=allow_expired, trust_dir=trust_dir)
    require_algorithms(blocklist, max_distance=max_distance, max_pdq_distance=max_pdq_distance)
    return Job(
        state_dir=state_dir,
        trust_dir=trust_dir,
        allow_expired=allow_expired,
        release=blocklist.current.manifest_sha256,
        max_distance=max_distance,
        max_pdq_distance=max_pdq_distance,
        columns=columns,
        batch_rows=batch_rows_for(max_distance=max_distance, max_pdq_distance=max_pdq_distance),
        threads=threads,
    )


def spark_filter(dataframe, job: Job):
    """The rows of a Spark DataFrame that ``job``'s release keeps, with the same schema (lazy, as Spark is)."""

    def apply(batches):
        rules = _worker_rules(job)  # before the first batch: an empty partition checks the release too
        if not rules.hash_columns(job.columns):
            for batch in batches:
                yield rules.filter(batch, job.columns)
            return
        yield from _near_in_runs(rules, job, batches)

    return dataframe.mapInArrow(apply, dataframe.schema)


def _near_in_runs(rules: Rules, job: Job, batches):
    """The batches filtered, in order, with their near-duplicate lookups made for runs of ``job.batch_rows`` rows
    at once: Spark hands a task batches of 10,000 rows (``spark.sql.execution.arrow.maxRecordsPerBatch``), and a
    lookup of so few pays a fixed cost many times over (``Rules.near``)."""
    held, rows = [], 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        if rows >= job.batch_rows:
            yield from _filter_run(rules, job, held)
            held, rows = [], 0
    yield from _filter_run(rules, job, held)


def _filter_run(rules: Rules, job: Job, held: list) -> list:
    answers = rules.near(held, job.columns)
    return [rules.filter(batch, job.columns, near=near) for batch, near in zip(held, answers, strict=True)]


@functools.lru_cache(maxsize=1)  # one release at a time: a worker holds the blocklist of the job it runs
def _worker_rules(job: Job) -> Rules:
    """The job's rules in this worker process, loaded and checked once (Spark reuses its Python workers)."""
    return job.rules()


def hash_lines(blocklist: Blocklist):
    """The PDQ hashes of a (partner) blocklist as ``pdq <hex>`` lines, sorted and unique."""
    for row in np.frombuffer(blocklist.pdq_bytes, dtype=np.uint8).reshape(-1, 32):
        yield f"pdq {row.tobytes().hex()}\n"
