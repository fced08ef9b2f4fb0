"""Many input files: a folder or a glob of shards, filtered ``jobs`` at a time in worker processes, each of
which loads the state itself and refuses to work unless it holds the release the parent verified (``Job``)."""

import csv
import glob
import io
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from optout.client import nearby, state
from optout.client.batch import Columns, Rules
from optout.client.filter import BATCH_ROWS, Counts, FilterError, detect_format, filter_file


def inputs(spec: str) -> list[Path]:
    """The files a command-line input names: a file, a folder (its files of known formats), or a glob."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _known(p))
    else:
        found = sorted(Path(name) for name in glob.glob(spec) if Path(name).is_file())
    if not found:
        raise FilterError(f"no input files in {spec}")
    return found


def _known(path: Path) -> bool:
    try:
        detect_format(path)
    except FilterError:
        return False
    return True


@dataclass(frozen=True)
class Job:
    """What a worker needs to rebuild the rules: the state to load, and the release it must hold."""

    state_dir: Path
    trust_dir: Path | None
    allow_expired: bool
    release: str
    max_distance: int | None
    max_pdq_distance: int | None
    columns: Columns
    batch_rows: int = BATCH_ROWS
    partner_state_dir: Path | None = None  # the partner tier, to tell decoy drops apart
    partner_release: str | None = None
    threads: int | None = None  # near-duplicate lookup threads in each worker (``Rules``)

    def rules(self) -> Rules:
        """Load the state (and the partner state) and build its rules; raises ``WrongRelease`` unless they hold
        ``release`` (and ``partner_release``).

        Fail closed: another pull may have switched the state since the parent verified it, or a
        worker may see another copy of it.
        """
        blocklist = state.load(self.state_dir, allow_expired=self.allow_expired, trust_dir=self.trust_dir)
        partner = None
        if self.partner_state_dir is not None:
            partner = state.load(self.partner_state_dir, allow_expired=self.allow_expired, trust_dir=self.trust_dir)
        rules = Rules(
            blocklist,
            max_distance=self.max_distance,
            max_pdq_distance=self.max_pdq_distance,
            exact=partner,
            threads=self.threads,
        )
        rules.require_release(self.release, self.partner_release)
        return rules


def _sharing(job: Job, jobs: int) -> Job:
    """``job`` for each of ``jobs`` workers: unless told otherwise, they share the CPUs for their lookup threads."""
    if job.threads is not None:
        return job
    return replace(job, threads=max(1, nearby.available_cpus() // jobs))


_worker_rules: Rules | None = None


def _start_worker(job: Job) -> None:
    global _worker_rules
    _worker_rules = job.rules()


def _work(job: Job, group: list[Path], out_dir: Path, report: bool) -> list[tuple[Counts, str]]:
    done = []
    for source, near in zip(group, _near_answers(_worker_rules, job, group), strict=True):
        buffer = io.StringIO()
        counts = filter_file(
            _worker_rules,
            source,
            out_dir / source.name,
            columns=job.columns,
            batch_rows=job.batch_rows,
            report=csv.writer(buffer) if report else None,  # a line per dropped row only when asked for
            near=near,
        )
        done.append((counts, buffer.getvalue()))
    return done


def groups(sources: list[Path], job: Job, jobs: int = 1) -> list[list[Path]]:
    """The sources in runs filtered together, in their order: when the job looks up near-duplicates, Parquet files
    of at most half a batch each (``job.batch_rows``) share their lookups (``Rules.near``), up to a batch of rows a
    run, or fewer so that ``jobs`` workers all get a run; every other file is a run of its own."""
    if job.max_distance is None and job.max_pdq_distance is None:
        return [[source] for source in sources]
    sizes = [_parquet_rows(source) for source in sources]
    small = [size is not None and 2 * size <= job.batch_rows for size in sizes]
    total = max(1, sum(size for size, fits in zip(sizes, small, strict=True) if fits))
    runs, rows, before, share = [], 0, 0, None  # share: which of ``jobs`` equal shares of the small files' rows
    for source, size, fits in zip(sources, sizes, small, strict=True):
        if not fits:
            runs.append([source])
            share = None  # the next file starts a run
            continue
        if share != before * jobs // total or rows + size > job.batch_rows:
            runs.append([])
            rows, share = 0, before * jobs // total
        runs[-1].append(source)
        rows += size
        before += size
    return runs


def _parquet_rows(source: Path) -> int | None:
    """The rows of a Parquet file by its footer, or None for another format or a file whose footer is unreadable
    (``filter_file`` says what is wrong with it)."""
    try:
        if detect_format(source)[0] != "parquet":
            return None
        return pq.ParquetFile(source).metadata.num_rows
    except (FilterError, OSError, pa.ArrowException):
        return None


def _near_answers(rules: Rules, job: Job, group: list[Path]) -> list[dict | None]:
    """``Rules.near`` of each file of a run of several, from their hash columns alone; None for a file whose
    columns cannot be read (``filter_file`` then looks its rows up itself, or says what is wrong)."""
    if len(group) < 2:
        return [None] * len(group)
    names = rules.hash_columns(job.columns)
    if not names:
        return [None] * len(group)
    tables = []
    for source in group:
        try:
            tables.append(pq.read_table(source, columns=names))
        except (OSError, pa.ArrowException):
            tables.append(None)
    readable = [table for table in tables if table is not None]
    answers = iter(rules.near(readable, job.columns))
    return [None if table is None else next(answers) for table in tables]


def _looked_up(rules: Rules, job: Job, runs: list[list[Path]]):
    """Each run with its ``_near_answers``, the next run's looked up on a thread meanwhile: its lookups (compiled,
    without the GIL) run beside this run's Parquet and URL hashing, as a big file's lookups run beside its own."""
    with ThreadPoolExecutor(1) as ahead:
        upcoming = ahead.submit(_near_answers, rules, job, runs[0]) if runs else None
        for at, run in enumerate(runs):
            answers = upcoming.result()
            if at + 1 < len(runs):
                upcoming = ahead.submit(_near_answers, rules, job, runs[at + 1])
            yield run, answers


def filter_many(
    rules: Rules | None, job: Job, sources: list[Path], out_dir: Path, *, jobs: int, report=None, on_file=None
) -> Counts:
    """Filter each of ``sources`` into ``out_dir`` under its own name, ``jobs`` at a time; returns the totals.

    ``rules``: ``job``'s, for one job in this process (None: built here when needed). Small Parquet files are
    filtered in runs that share their near-duplicate lookups (``groups``)."""
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise FilterError("two inputs have the same file name: their outputs would collide")
    total = Counts()
    runs = groups(sources, job, jobs)
    if jobs <= 1:
        rules = rules or job.rules()
        for run, answers in _looked_up(rules, job, runs):
            for source, near in zip(run, answers, strict=True):
                total.add(
                    filter_file(
                        rules,
                        source,
                        out_dir / source.name,
                        columns=job.columns,
                        batch_rows=job.batch_rows,
                        report=report,
                        near=near,
                    )
                )
                if on_file:
                    on_file(source, total)
        return total
    job = _sharing(job, jobs)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_start_worker, initargs=(job,)) as pool:
        futures = [(run, pool.submit(_work, job, run, out_dir, report is not None)) for run in runs]
        for run, future in futures:
            for source, (counts, lines) in zip(run, future.result(), strict=True):
                total.add(counts)
                if report is not None and lines:
                    report.writerows(csv.reader(io.StringIO(lines)))
                if on_file:
                    on_file(source, total)
    return total
