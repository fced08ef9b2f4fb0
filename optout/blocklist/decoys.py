"""Decoys: every public URL key is published among ``OPTOUT_PUBLIC_DECOYS`` (k) others.

The URL lists of the datasets we serve are public, so a bare ``url_sha256`` is only as private
as the crowd it hides in: whoever hashes a dataset's URL list and intersects it with the public
tier would otherwise hold the exact list of pictures people wanted gone. The README's threat
model says what this does and does not hide; this module is how.

The draw. The first time an entry is published, for every dataset whose index holds its URL,
take the dataset's rows **of the same host** in ``url_sha256`` order (a circle), and choose the
window of k + 1 consecutive rows that holds the entry's own row at position j, where j comes
from a keyed hash of the key (``salted_hmac`` under ``SECRET_KEY``). The k other rows are its
decoys. Hash order is unrelated to what a URL says, so a window is k random rows of the host,
and the real key sits at a uniformly random, secret place in it: within what the adversary can
see (host, URL shape, hash order), every member is equally likely to be the real one. Keys that
are already blocklist entries or decoys of another entry are skipped, so groups drawn in different
releases do not overlap. A host with fewer than k + 1 rows gives what it has
and the rest come from the whole dataset, the same way (a weaker crowd, counted in the README).

The crowd only grows. A decoy is a key never used before: no blocklist entry holds it and no group
has ever drawn it (groups are never deleted, a withdrawn entry keeps its group for the day it comes
back). So every key the public tier ever carried belongs to exactly one group, except one case: a
URL can become a real entry after it was drawn as someone's decoy. Its own key was then published
already, and counted in the other group; such an entry draws k + 1 decoys instead of k (``need``),
and the line that carries its image sha256 is one of those. Summed over the whole release history,
each real entry that the adversary can match to a URL list brings at least k + 1 keys of that list
no other real entry brings, so the share of real keys among all keys the public tier ever carried
is at most 1/(k + 1), withdrawals included, as long as the datasets have rows to draw (the README's
threat model).

A URL that no imported dataset holds gets k keys of no URL at all (keyed hashes): nobody can
turn those back into URLs, and a lone real key never appears. The same keys make up the number
when the datasets holding a URL have fewer than k other rows.

The group is drawn once and stored (``PublicDecoy``): later imports never reshuffle it, a
re-blocked entry gets the same group back, and the group arrives in the release that first
publishes the entry and leaves with it (see ``releases``). The image ``sha256`` of the entry is
published on the line of the group's smallest key rather than on the entry's own (``releases``
picks it), so that "which line carries a sha256" points at a random member too.
"""

import csv
import io
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, IntegerField, OuterRef
from django.db.models.functions import Cast
from django.utils.crypto import salted_hmac

from optout.blocklist import planner
from optout.models import BlocklistEntry, Dataset, DatasetRow, PublicDecoy, UrlHost

_SALT = "optout.blocklist.decoys"
_HOST = UrlHost.postgres_template % {"expressions": "r.url"}  # as the index datasetrow_host has it

__all__ = [
    "DatasetDecoys",
    "count_changes",
    "decoy_counts",
    "draw_decoys",
    "filler_keys",
    "published_counts",
    "unindexed_count",
    "was_decoy",
]


def _keyed(message: str) -> bytes:
    return salted_hmac(_SALT, message, algorithm="sha256").digest()


def _position(key: str, need: int) -> int:
    """Where the real row sits in its window of need + 1 (0 = first): secret, stable, uniform."""
    return int.from_bytes(_keyed(f"position:{key}")[:8], "big") % (need + 1)


def filler_keys(key: str, k: int) -> list[str]:
    """The k decoys of a key whose URL no dataset holds: keyed hashes, the keys of no URL."""
    return [_keyed(f"filler:{key}:{i}").hex() for i in range(k)]


def was_decoy():
    """An expression for a query of entries: the entry's own key was drawn as the decoy of another entry."""
    return Exists(PublicDecoy.objects.filter(url_sha256=OuterRef("url_sha256")).exclude(entry=OuterRef("pk")))


def draw_decoys(*, k: int | None = None) -> None:
    """Draw the decoy group of every blocked entry that has none yet (``decoys_drawn`` is set by the publisher
    when the release that carries them commits). Called by the publisher under the blocklist lock."""
    k = settings.OPTOUT_PUBLIC_DECOYS if k is None else k
    pending = BlocklistEntry.objects.filter(blocked=True, decoys_drawn=False)
    # Published before it had decoys (an installation upgrading): its group arrives now, so it is a change.
    pending.filter(published=True, dirty=False).update(dirty=True)
    if k == 0:
        return
    # A key already published as another group's decoy counts there: its own group brings k + 1 new keys.
    pending = pending.annotate(need=k + Cast(was_decoy(), IntegerField()))
    entries = {key: (entry_id, need) for key, entry_id, need in pending.values_list("url_sha256", "id", "need")}
    if not entries:
        return
    _draw_windows(entries)
    # URLs in no dataset, and datasets too small to give k rows: keys of no URL make up the number.
    drawn = _drawn_counts([entry_id for entry_id, _need in entries.values()])
    PublicDecoy.objects.bulk_create(
        [
            PublicDecoy(entry_id=entry_id, dataset=None, url_sha256=decoy)
            for key, (entry_id, need) in entries.items()
            if drawn.get(entry_id, 0) < need
            for decoy in filler_keys(key, need)[: need - drawn.get(entry_id, 0)]
        ],
        batch_size=10_000,
        ignore_conflicts=True,
    )
    planner.analyze_after_bulk(PublicDecoy, sum(need for _entry_id, need in entries.values()))


# The draw's queries name the entries and keys they are about, as lists: the planner then looks them up by index
# whatever its statistics say. Asked as joins with the blocklist, they were planned from statistics taken before
# the last release (autovacuum lags bulk changes) and read the whole dataset index or every decoy for 50 entries.


_LIST = 10_000  # values per list: SQLite takes at most 32,766 parameters


def _chunks(values: list) -> list[list]:
    return [values[start : start + _LIST] for start in range(0, len(values), _LIST)]


def _drawn_counts(entry_ids: list[int]) -> dict:
    """{entry id: decoys it has}, for entries that have any."""
    counts = {}
    for chunk in _chunks(entry_ids):
        drawn = PublicDecoy.objects.filter(entry_id__in=chunk).values("entry_id").annotate(n=Count("id"))
        counts.update(drawn.values_list("entry_id", "n"))
    return counts


def _draw_windows(entries: dict) -> None:
    """The windows of the entries ({key: (entry id, need)}) in every dataset that holds their URL."""
    rows = [
        row
        for chunk in _chunks(list(entries))
        for row in DatasetRow.objects.filter(url_sha256__in=chunk)
        .annotate(host=UrlHost("url"))
        .values_list("url_sha256", "dataset_id", "host")
    ]
    groups = sorted(  # (entry id, key, dataset id, host, position, need), in entry order: the order groups are drawn in
        (entries[key][0], key, dataset_id, host, _position(key, entries[key][1]), entries[key][1])
        for key, dataset_id, host in rows
    )
    if groups:
        _draw_sorted(groups) if connection.vendor == "postgresql" else _draw_rowwise(groups)


def _draw_rowwise(groups: list) -> None:
    """The reference draw, one window at a time, each stored before the next is drawn (SQLite, and the tests'
    yardstick for ``_draw_sorted``): every group's window within its host first, then the whole dataset for
    groups still short. Each group skips the rows earlier groups took, so groups never share a decoy."""
    for entry_id, key, dataset_id, host, position, need in groups:
        _store({(entry_id, dataset_id): _window(dataset_id, host, key, position, need, {key})})
    drawn = Counter(
        PublicDecoy.objects.filter(entry_id__in={group[0] for group in groups}).values_list("entry_id", "dataset_id")
    )
    for entry_id, key, dataset_id, _host, position, need in groups:
        missing = need - drawn[entry_id, dataset_id]
        if missing > 0:
            have = set(PublicDecoy.objects.filter(entry_id=entry_id).values_list("url_sha256", flat=True))
            _store({(entry_id, dataset_id): _window(dataset_id, None, key, position, missing, {key, *have})})


def _window(dataset_id: int, host: str | None, key: str, position: int, k: int, taken: set[str]) -> list[str]:
    """The k rows around ``key`` on the circle of the dataset's (host's) rows in hash order, skipping ``taken``
    and keys already in use (entries, decoys)."""
    position = min(position, k)
    rows = DatasetRow.objects.filter(dataset_id=dataset_id)
    if host is not None:
        rows = rows.annotate(host=UrlHost("url")).filter(host=host)
    keys = rows.values_list("url_sha256", flat=True)
    below, above = keys.filter(url_sha256__lt=key), keys.filter(url_sha256__gt=key)
    before = _free(below.order_by("-url_sha256"), position, taken)
    before += _free(above.order_by("-url_sha256"), position - len(before), taken | set(before))
    after = _free(above.order_by("url_sha256"), k - position, taken)
    after += _free(below.order_by("url_sha256"), k - position - len(after), taken | set(after))
    return list(dict.fromkeys(before + after))[:k]


def _free(ordered, count: int, taken: set[str]) -> list[str]:
    """The first ``count`` keys of ``ordered`` not in ``taken`` nor in use. Reads a few more than asked for and
    checks them by key: an anti-join here makes PostgreSQL sort the whole dataset."""
    found: list[str] = []
    offset = 0
    while len(found) < count:
        batch = list(ordered[offset : offset + 2 * count + 8])
        if not batch:
            break
        used = set(BlocklistEntry.objects.filter(url_sha256__in=batch).values_list("url_sha256", flat=True))
        used |= set(PublicDecoy.objects.filter(url_sha256__in=batch).values_list("url_sha256", flat=True))
        found += [candidate for candidate in batch if candidate not in taken and candidate not in used]
        offset += len(batch)
    return found[:count]


def _store(picked: dict) -> None:
    PublicDecoy.objects.bulk_create(
        [
            PublicDecoy(entry_id=entry_id, dataset_id=dataset_id, url_sha256=decoy)
            for (entry_id, dataset_id), keys in picked.items()
            for decoy in keys
        ],
        batch_size=10_000,
        ignore_conflicts=True,
    )


# --- The same draw in a few statements (PostgreSQL) ------------------------------------------------------------
#
# ``_draw_rowwise`` asks the database for each window and stores it before the next one, so that each group sees
# the picks of the groups before it: thousands of tiny queries, most of a release at 100,000 entries.
# ``_draw_sorted`` gives the same picks from a few statements. It reads, for every window, the first free rows on
# each side of its key on its circle (the rows of a host of a dataset, or of the whole dataset, in hash order),
# and replays the windows in entry order in memory, skipping what earlier groups took. A side that runs out
# before its window is full is either all there is (the window goes on from the circle's other end, read when
# first needed) or was read too shallow: it is read four times deeper and the replay starts over. A group only
# loses rows to earlier groups, so this ends, and its picks are those of the one-by-one draw.

_SLACK = 4  # rows read per side beyond what its window asks for, in case earlier groups took a few
_CHUNK = 20_000  # windows replayed and stored at a time: what the replay holds in memory stays bounded
_DIRECTIONS = {"below": ("<", "DESC"), "above": (">", "ASC"), "top": (None, "DESC"), "bottom": (None, "ASC")}


@dataclass
class _Side:
    """The first free keys of a circle from a key (or from an end: ``top``, ``bottom``) in one direction, nearest
    first; ``whole``: they are all there are (the read stopped short of its depth)."""

    keys: list[str]
    whole: bool


def _draw_sorted(groups: list) -> None:
    """The host windows a chunk of hosts at a time (each chunk's picks stored before the next reads, so they
    are no longer free to it), then the dataset windows of the groups still short."""
    drawn = Counter(
        PublicDecoy.objects.filter(entry_id__in={group[0] for group in groups}).values_list("entry_id", "dataset_id")
    )
    hosts: dict = {}
    for group in groups:
        hosts.setdefault(group[3], []).append(group)
    chunk: list = []
    for index, host_groups in enumerate(hosts.values(), 1):
        chunk += host_groups
        if len(chunk) >= _CHUNK or index == len(hosts):
            windows = [((dataset, host), entry, key, position, need) for entry, key, dataset, host, position, need
                       in sorted(chunk)]  # fmt: skip
            picks = _replay(windows)
            _copy_picks(picks)
            drawn.update({(entry, circle[0]): len(keys) for (entry, circle), keys in picks.items()})
            chunk = []
    dataset_phase = [
        ((dataset, None), entry, key, min(position, need - drawn[entry, dataset]), need - drawn[entry, dataset])
        for entry, key, dataset, _host, position, need in groups
        if need > drawn[entry, dataset]
    ]
    if dataset_phase:
        _copy_picks(_replay(dataset_phase))


def _replay(windows: list) -> dict:
    """Each window (circle, entry id, key, position, count) in order, as ``_window`` draws them one by one after
    storing the ones before: {(entry id, circle): keys}.

    Windows of different hosts cannot take each other's rows (a key is one URL's, and a URL has one host), so
    each host is replayed on its own until none lacks a side. Should two spellings of one URL's host have
    given a key to two hosts and two windows, everything is replayed as one. (Hosts in different chunks of
    ``_draw_sorted`` cannot meet so: the later chunk finds the key taken, and the earlier chunk keeps it even
    if the one-by-one draw would have given it to the later entry. Groups still never share a decoy.)"""
    reader = _SideReader()
    reader.read(
        {("below", circle, key): position for circle, _, key, position, _ in windows}
        | {("above", circle, key): count - position for circle, _, key, position, count in windows}
    )
    units: dict = {}
    for window in windows:
        units.setdefault(window[0][1], []).append(window)
    picks = _replay_units(list(units.values()), reader)
    drawn = [key for keys in picks.values() for key in keys]
    if len(units) > 1 and len(set(drawn)) < len(drawn):
        picks = _replay_units([windows], reader)
    return picks


def _replay_units(units: list, reader: "_SideReader") -> dict:
    picks = {}
    while units:
        wanted, lacking = {}, []
        for unit in units:
            unit_picks, unit_wanted = _replay_once(unit, reader)
            if unit_wanted:
                for side, count in unit_wanted.items():  # the deeper ask, should two units want one side
                    wanted[side] = max(wanted.get(side, 0), count)
                lacking.append(unit)
            else:
                picks |= unit_picks
        if wanted:
            reader.read(wanted)
        units = lacking
    return picks


def _replay_once(windows: list, reader: "_SideReader") -> tuple[dict, dict]:
    """One replay, and the sides it lacked (not read yet, or too shallow: {side: rows it asked for}); its picks
    count only if it lacked none."""
    picks, wanted, taken = {}, {}, set()
    for circle, entry_id, key, position, count in windows:
        before = _walk(reader, ("below", circle, key), position, taken, [], wanted)
        if len(before) < position:  # past the circle's first row: on from its last
            before += _walk(reader, ("top", circle, key), position - len(before), taken, before, wanted)
        after = _walk(reader, ("above", circle, key), count - position, taken, [], wanted)
        if len(after) < count - position:
            after += _walk(reader, ("bottom", circle, key), count - position - len(after), taken, after, wanted)
        window = list(dict.fromkeys(before + after))[:count]
        picks.setdefault((entry_id, circle), []).extend(window)
        taken.update(window)
    return picks, wanted


def _walk(reader: "_SideReader", side: tuple, count: int, taken: set[str], also: list[str], wanted: dict) -> list[str]:
    """The first ``count`` keys of a side that are neither ``taken`` nor ``also`` (the window's own, a few). A side
    not read, or read too shallow to tell, goes into ``wanted``. The ends of a circle (``top``, ``bottom``) stop
    at the window's own key."""
    if count <= 0:
        return []
    direction, _circle, key = side
    read = reader.side(side)
    if read is None:
        wanted[side] = max(wanted.get(side, 0), count)
        return []
    found = []
    for candidate in read.keys:
        if direction == "top" and candidate <= key or direction == "bottom" and candidate >= key:
            return found
        if candidate not in taken and candidate not in also:
            found.append(candidate)
            if len(found) == count:
                return found
    if not read.whole:
        wanted[side] = max(wanted.get(side, 0), count)
    return found


class _SideReader:
    """The sides read so far, and how deep; a circle's ends are read once for all its windows."""

    def __init__(self):
        self.sides: dict[tuple, _Side] = {}
        self.depth: dict[tuple, int] = {}

    @staticmethod
    def _stored(side: tuple) -> tuple:
        direction, circle, _key = side
        return (direction, circle, None) if direction in ("top", "bottom") else side

    def side(self, side: tuple) -> _Side | None:
        return self.sides.get(self._stored(side))

    def read(self, sides: dict) -> None:
        """Reads the sides not read yet ({side: rows a window asks of it}), and those read before four times
        deeper."""
        depths = {}
        for side, count in sides.items():
            stored = self._stored(side)
            first = count + _SLACK if stored not in self.sides else 4 * self.depth[stored]
            depths[stored] = max(depths.get(stored, 0), first)
        self.depth.update(depths)
        self.sides.update(_read_sides(depths))


def _read_sides(wanted: dict) -> dict:
    """{(direction, (dataset id, host or None), key or None): depth} -> {the same: _Side}, in one statement."""
    rows, entries, decoys = DatasetRow._meta.db_table, BlocklistEntry._meta.db_table, PublicDecoy._meta.db_table
    asked = list(wanted.items())
    with connection.cursor() as cursor:
        # One table for all the reads of a draw (ON COMMIT DROP), emptied before each.
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS optout_decoy_sides (n int, direction text, dataset_id bigint, "
            'by_host bool, host text, key text COLLATE "C", depth int) ON COMMIT DROP'
        )
        cursor.execute("TRUNCATE optout_decoy_sides")
        buffer = io.StringIO()
        csv.writer(buffer).writerows(
            (n, direction, dataset_id, host is not None, host or "", key or "", depth)
            for n, ((direction, (dataset_id, host), key), depth) in enumerate(asked)
        )
        buffer.seek(0)
        cursor.cursor.copy_expert("COPY optout_decoy_sides FROM STDIN WITH (FORMAT csv)", buffer)
        free = (
            f"NOT EXISTS (SELECT 1 FROM {entries} b WHERE b.url_sha256 = r.url_sha256) "
            f"AND NOT EXISTS (SELECT 1 FROM {decoys} u WHERE u.url_sha256 = r.url_sha256)"
        )
        parts = []
        for direction, (compare, order) in _DIRECTIONS.items():
            for by_host in (True, False):
                scope = "r.dataset_id = s.dataset_id" + (f" AND {_HOST} = s.host" if by_host else "")
                bound = f"AND r.url_sha256 {compare} s.key" if compare else ""
                parts.append(
                    f"""SELECT s.n, (SELECT string_agg(w.url_sha256, ',') FROM (
                            SELECT r.url_sha256 FROM {rows} r WHERE {scope} {bound} AND {free}
                            ORDER BY r.url_sha256 {order} LIMIT s.depth) w)
                        FROM optout_decoy_sides s WHERE s.direction = '{direction}' AND {"" if by_host else "NOT "}s.by_host"""
                )
        # Thousands of small index scans, each stopping after a few rows. PostgreSQL cannot see how few (the
        # LIMIT is a column), so left to itself it plans for many: a sequential scan of a table it believes empty
        # (the decoy table before its first analysis), or a merge anti-join that reads every entry per side. The
        # disabled plans' costs would then make it compile the statement (JIT): a second per statement.
        with planner.settings(cursor, jit="off", enable_seqscan="off", enable_mergejoin="off", enable_hashjoin="off"):
            cursor.execute(" UNION ALL ".join(parts))
            found = dict(cursor.fetchall())
    sides = {}
    for n, (side, depth) in enumerate(asked):
        keys = sorted(found[n].split(",") if found.get(n) else [], reverse=_DIRECTIONS[side[0]][1] == "DESC")
        sides[side] = _Side(keys, whole=len(keys) < depth)
    return sides


def _copy_picks(picks: dict) -> None:
    buffer = io.StringIO()
    # In key order: the key index then grows at its right edge instead of everywhere.
    csv.writer(buffer).writerows(
        sorted(
            ((entry_id, dataset_id, key) for (entry_id, (dataset_id, _host)), keys in picks.items() for key in keys),
            key=lambda row: row[2],
        )
    )
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f"COPY {PublicDecoy._meta.db_table} (entry_id, dataset_id, url_sha256) FROM STDIN WITH (FORMAT csv)", buffer
        )


@dataclass(frozen=True)
class DatasetDecoys:
    """How many decoy keys of one dataset the latest release publishes, and what share of its rows that is."""

    dataset: str
    release: str
    decoys: int
    rows: int

    @property
    def share(self) -> float:
        return self.decoys / self.rows if self.rows else 0.0

    @property
    def percent(self) -> str:
        return f"{self.share * 100:.2g}%"


def published_counts() -> dict:
    """{dataset id, or None for keys of no URL: decoy keys} in the latest release's public tier, one pass over
    the decoys. A key is counted once per dataset even if it stands beside several entries."""
    published = PublicDecoy.objects.filter(entry__published=True)
    return dict(published.values("dataset").annotate(n=Count("url_sha256", distinct=True)).values_list("dataset", "n"))


def count_changes(keys: str) -> dict:
    """{dataset id, or None: decoy keys the release being made adds (positive) or drops (negative)} in the
    public tier, as ``published_counts()`` would count them once its entries' ``published`` flags are set
    (blocked for the changed entries, as they were for the others). Reads only the decoys of ``keys``, a
    table of keys (column ``k``) that holds every key a changed entry's group holds: the publisher's
    ``optout_delta_touched``. A key another group keeps counts as before, so previous counts plus these
    changes equal a full count, in a fraction of its time."""
    entries, table = BlocklistEntry._meta.db_table, PublicDecoy._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT dataset_id, SUM(now - before) FROM (
                SELECT d.dataset_id, d.url_sha256,
                       MAX(CASE WHEN (e.dirty AND e.blocked) OR (NOT e.dirty AND e.published) THEN 1 ELSE 0 END) AS now,
                       MAX(CASE WHEN e.published THEN 1 ELSE 0 END) AS before
                FROM {keys} t JOIN {table} d ON d.url_sha256 = t.k JOIN {entries} e ON e.id = d.entry_id
                GROUP BY d.dataset_id, d.url_sha256
            ) p GROUP BY dataset_id
            """
        )
        return {dataset: int(change) for dataset, change in cursor.fetchall() if change}


def decoy_counts(counts: dict | None = None) -> list[DatasetDecoys]:
    """Decoys in the latest release's public tier, per dataset that has any (the cost to public-tier builders),
    from ``published_counts()`` (read if not given). Keys of no URL (for URLs in no dataset) belong to no
    dataset and cost builders nothing; they are not listed."""
    counts = {dataset: n for dataset, n in (published_counts() if counts is None else counts).items() if dataset}
    return [
        DatasetDecoys(dataset=dataset.name, release=dataset.release, decoys=counts[dataset.pk], rows=dataset.row_count)
        for dataset in Dataset.objects.filter(pk__in=counts).order_by("name")
    ]


def unindexed_count(counts: dict | None = None) -> int:
    """Keys of no URL in the latest release's public tier (decoys of URLs that no dataset holds)."""
    return (published_counts() if counts is None else counts).get(None, 0)
