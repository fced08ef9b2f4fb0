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
from django.db.models import Count, Exists, F, IntegerField, OuterRef
from django.db.models.functions import Cast
from django.utils.crypto import salted_hmac

from optout.models import BlocklistEntry, Dataset, DatasetRow, PublicDecoy, UrlHost

_SALT = "optout.blocklist.decoys"

__all__ = ["DatasetDecoys", "decoy_counts", "draw_decoys", "filler_keys", "unindexed_count", "was_decoy"]


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
    _draw_windows(pending, k)
    # URLs in no dataset, and datasets too small to give k rows: keys of no URL make up the number.
    short = pending.annotate(drawn=Count("decoys")).filter(drawn__lt=F("need"))
    PublicDecoy.objects.bulk_create(
        [
            PublicDecoy(entry_id=entry_id, dataset=None, url_sha256=decoy)
            for entry_id, key, drawn, need in short.values_list("id", "url_sha256", "drawn", "need").iterator(10_000)
            for decoy in filler_keys(key, need)[: need - drawn]
        ],
        batch_size=10_000,
        ignore_conflicts=True,
    )


def _draw_windows(pending, k: int) -> None:
    entries = {key: (entry_id, need) for key, entry_id, need in pending.values_list("url_sha256", "id", "need")}
    if not entries:
        return
    rows = DatasetRow.objects.filter(url_sha256__in=pending.values("url_sha256")).annotate(host=UrlHost("url"))
    groups = sorted(  # (entry id, key, dataset id, host, position, need), in entry order: the order groups are drawn in
        (entries[key][0], key, dataset_id, host, _position(key, entries[key][1]), entries[key][1])
        for key, dataset_id, host in rows.values_list("url_sha256", "dataset_id", "host").iterator(10_000)
    )
    if not groups:
        return
    # Every group's window within its host first, then the whole dataset for groups still short. Each group
    # skips the rows earlier groups took, so groups never share a decoy.
    if connection.vendor == "postgresql":
        _host_windows_postgres(groups, k)
    else:
        _host_windows_rowwise(groups)
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


def _host_windows_rowwise(groups: list) -> None:
    """The host windows one group at a time (SQLite); ``_host_windows_postgres`` does the same in rounds."""
    for entry_id, key, dataset_id, host, position, need in groups:
        _store({(entry_id, dataset_id): _window(dataset_id, host, key, position, need, {key})})


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


def _host_windows_postgres(groups: list, k: int) -> None:
    """The host windows of all groups, a statement per round: the same rows as ``_window`` gives one by one."""
    rows = DatasetRow._meta.db_table
    entries = BlocklistEntry._meta.db_table
    decoys = PublicDecoy._meta.db_table
    host = "lower(split_part(r.url, '/', 3))"
    free = (
        f"NOT EXISTS (SELECT 1 FROM {entries} b WHERE b.url_sha256 = r.url_sha256) "
        f"AND NOT EXISTS (SELECT 1 FROM {decoys} u WHERE u.url_sha256 = r.url_sha256)"
    )

    def side(order: str, near: str, far: str, limit: str, scope: str) -> str:
        # One side of the window: the nearest rows on that side, then (the circle) the farthest of the other.
        # The inner LIMITs are the constant k + 1 (the largest need): a LIMIT PostgreSQL cannot see makes it plan
        # for a large one. No ORDER BY outside: PostgreSQL's Append returns its first branch before it starts the
        # second, so the LIMIT stops before the far branch runs unless the near one is short (an ORDER BY there
        # ran both index scans for every group, and the far one almost never counts). The rowwise test checks it.
        return f"""
            SELECT url_sha256 FROM (
                (SELECT r.url_sha256 FROM {rows} r
                 WHERE {scope} AND r.url_sha256 {near} g.key AND {free}
                 ORDER BY r.url_sha256 {order}, r.dataset_id {order} LIMIT {k + 1})
                UNION ALL
                (SELECT r.url_sha256 FROM {rows} r
                 WHERE {scope} AND r.url_sha256 {far} g.key AND {free}
                 ORDER BY r.url_sha256 {order}, r.dataset_id {order} LIMIT {k + 1})
            ) s LIMIT {limit}
        """

    def window(scope: str, before: str, after: str) -> str:
        return f"({side('DESC', '<', '>', before, scope)}) UNION ({side('ASC', '>', '<', after, scope)})"

    with connection.cursor() as cursor:
        # Round r draws the r-th group (in entry order) of every host: groups of one host see each other's
        # picks, as one by one, and groups of different hosts cannot meet.
        rounds = Counter()
        numbered = []
        for group in groups:
            numbered.append((*group, rounds[group[2], group[3]]))
            rounds[group[2], group[3]] += 1
        # ON COMMIT DROP, but two publishers in one transaction (tests) would meet the first one's table.
        cursor.execute("DROP TABLE IF EXISTS optout_decoy_groups")
        cursor.execute(
            'CREATE TEMPORARY TABLE optout_decoy_groups (entry_id bigint, key text COLLATE "C", '
            "dataset_id bigint, host text, position int, need int, round int) ON COMMIT DROP"
        )
        buffer = io.StringIO()
        csv.writer(buffer).writerows(numbered)
        buffer.seek(0)
        cursor.cursor.copy_expert("COPY optout_decoy_groups FROM STDIN WITH (FORMAT csv)", buffer)
        cursor.execute("ANALYZE optout_decoy_groups")
        # Each round is a new statement of thousands of small index scans: compiling it (JIT) cost more than it saved.
        cursor.execute("SET LOCAL jit = off")
        scope = f"r.dataset_id = g.dataset_id AND {host} = g.host"
        for number in range(max(rounds.values())):
            cursor.execute(
                f"""
                INSERT INTO {decoys} (entry_id, dataset_id, url_sha256)
                SELECT g.entry_id, g.dataset_id, w.url_sha256 FROM optout_decoy_groups g
                CROSS JOIN LATERAL ({window(scope, "g.position", "g.need - g.position")}) w
                WHERE g.round = %s
                ON CONFLICT DO NOTHING
                """,
                [number],
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


def decoy_counts() -> list[DatasetDecoys]:
    """Decoys in the latest release's public tier, per dataset that has any (the cost to public-tier builders).

    A key is counted once per dataset even if it stands beside several entries. Keys of no URL
    (for URLs in no dataset) belong to no dataset and cost builders nothing; they are not listed.
    """
    published = PublicDecoy.objects.filter(entry__published=True, dataset__isnull=False)
    counts = dict(
        published.values("dataset").annotate(n=Count("url_sha256", distinct=True)).values_list("dataset", "n")
    )
    if not counts:
        return []
    sizes = dict(
        DatasetRow.objects.filter(dataset_id__in=counts)
        .values("dataset")
        .annotate(n=Count("id"))
        .values_list("dataset", "n")
    )
    return [
        DatasetDecoys(
            dataset=dataset.name, release=dataset.release, decoys=counts[dataset.pk], rows=sizes.get(dataset.pk, 0)
        )
        for dataset in Dataset.objects.filter(pk__in=counts).order_by("name")
    ]


def unindexed_count() -> int:
    """Keys of no URL in the latest release's public tier (decoys of URLs that no dataset holds)."""
    return (
        PublicDecoy.objects.filter(entry__published=True, dataset__isnull=True).values("url_sha256").distinct().count()
    )
