"""Decoys in the public tier: drawn from the dataset, stable, arriving and leaving with their key."""

from collections import Counter

import pytest
from django.db import connection

from optout.blocklist import decoys, feed_sql, holds, releases
from optout.client.canonical import url_sha256
from optout.feed.api import lookup
from optout.index.importer import count_rows
from optout.models import BlocklistEntry, BlocklistHold, Dataset, DatasetRow, PublicDecoy
from tests.optout.conftest import group, keys, lines, manifest

pytestmark = pytest.mark.django_db

K = 9


def add_rows(dataset: Dataset, host: str, count: int, start: int = 0) -> list[str]:
    urls = [f"https://{host}/photos/{i:05d}.jpg" for i in range(start, start + count)]
    DatasetRow.objects.bulk_create([DatasetRow(dataset=dataset, url=url, url_sha256=url_sha256(url)) for url in urls])
    count_rows(dataset.pk, len(urls))  # as the importer does
    return urls


@pytest.fixture
def dataset():
    dataset = Dataset.objects.create(name="laion-mini", release="2026-01")
    add_rows(dataset, "big.example.com", 60)
    add_rows(dataset, "other.example.org", 60)
    add_rows(dataset, "tiny.example.net", 3)
    return dataset


def host_keys(dataset: Dataset, host: str) -> set[str]:
    return set(
        DatasetRow.objects.filter(dataset=dataset, url__contains=f"//{host}/").values_list("url_sha256", flat=True)
    )


def test_decoys_are_other_rows_of_the_same_dataset_and_host(dataset, publish):
    real = url_sha256("https://big.example.com/photos/00007.jpg")
    holds.hold(holder="item:1", url_sha256=real)
    publish()
    drawn = PublicDecoy.objects.filter(entry__url_sha256=real)
    assert drawn.count() == K
    assert set(drawn.values_list("dataset", flat=True)) == {dataset.pk}
    assert set(drawn.values_list("url_sha256", flat=True)) <= host_keys(dataset, "big.example.com") - {real}


def test_the_real_key_sits_at_a_secret_uniform_place_in_its_window():
    positions = Counter(decoys._position(url_sha256(f"https://x.example/{i}.jpg"), K) for i in range(2000))
    assert set(positions) == set(range(K + 1))
    assert all(120 < count < 280 for count in positions.values())  # 200 each on average


def test_a_group_arrives_whole_in_one_release_and_leaves_whole_on_withdrawal(dataset, publish, feed_files):
    real = url_sha256("https://other.example.org/photos/00011.jpg")
    holds.hold(holder="item:1", url_sha256=real, image_sha256="ab" * 32)
    publish()
    members = group(real)
    assert len(members) == K + 1
    assert keys(feed_files, "public", releases.delta_name(1)) == members
    holds.release_hold(holder="item:1")
    publish()
    assert [(line["key"], line["op"]) for line in lines(feed_files, "public", releases.delta_name(2))] == [
        (key, "remove") for key in members
    ]
    assert keys(feed_files, "public", releases.snapshot_name(2)) == []


def test_a_decoy_another_group_still_carries_stays(dataset, publish, feed_files):
    first = url_sha256("https://big.example.com/photos/00001.jpg")
    second = url_sha256("https://big.example.com/photos/00002.jpg")
    holds.hold(holder="item:1", url_sha256=first)
    holds.hold(holder="item:2", url_sha256=second)
    publish()
    # Give the second entry one of the first one's decoys too, as a group drawn later could hold it.
    shared = next(key for key in group(first) if key != first and key not in group(second))
    PublicDecoy.objects.create(entry=BlocklistEntry.objects.get(url_sha256=second), dataset=dataset, url_sha256=shared)
    holds.release_hold(holder="item:1")
    publish()
    delta = lines(feed_files, "public", releases.delta_name(2))
    removed = [line["key"] for line in delta if line["op"] == "remove"]
    assert shared not in removed and first in removed
    assert shared in keys(feed_files, "public", releases.snapshot_name(2))


def test_decoys_are_stable_across_releases_and_imports(dataset, publish, feed_files):
    real = url_sha256("https://big.example.com/photos/00030.jpg")
    holds.hold(holder="item:1", url_sha256=real)
    publish()
    members = group(real)
    add_rows(dataset, "big.example.com", 200, start=1000)  # the host's circle changes
    publish()
    holds.release_hold(holder="item:1")
    publish()
    holds.hold(holder="item:2", url_sha256=real)  # blocked again later
    publish()
    assert group(real) == members
    assert keys(feed_files, "public", releases.delta_name(4)) == members
    assert keys(feed_files, "public", releases.snapshot_name(4)) == members


def test_no_lone_real_key_for_urls_in_no_dataset_or_a_tiny_host(dataset, publish, feed_files):
    nowhere = url_sha256("https://unindexed.example/secret.jpg")
    tiny = url_sha256("https://tiny.example.net/photos/00000.jpg")
    holds.hold(holder="item:1", url_sha256=nowhere)
    holds.hold(holder="item:2", url_sha256=tiny)
    publish()
    # No dataset: keys of no URL, derived from a secret.
    assert group(nowhere) == sorted([nowhere, *decoys.filler_keys(nowhere, K)])
    assert not DatasetRow.objects.filter(url_sha256__in=decoys.filler_keys(nowhere, K)).exists()
    # A host of three rows gives its two others, and the rest of the dataset the remainder.
    tiny_decoys = set(group(tiny)) - {tiny}
    assert len(tiny_decoys) == K
    assert host_keys(dataset, "tiny.example.net") - {tiny} <= tiny_decoys
    assert tiny_decoys <= set(DatasetRow.objects.filter(dataset=dataset).values_list("url_sha256", flat=True))
    public = keys(feed_files, "public", releases.snapshot_name(1))
    assert public == sorted(set(group(nowhere)) | set(group(tiny)))


def test_the_partner_tier_is_exact(dataset, publish, feed_files):
    real = [url_sha256(f"https://big.example.com/photos/{i:05d}.jpg") for i in (3, 4, 5)]
    for i, key in enumerate(real):
        holds.hold(holder=f"item:{i}", url_sha256=key, image_sha256=f"{i + 1:02x}" * 32)
    release = publish()
    assert keys(feed_files, "partner", releases.snapshot_name(1)) == sorted(real)
    assert manifest(feed_files, "partner", 1)["snapshot"]["entries"] == release.entries == 3
    assert "decoys" not in manifest(feed_files, "partner", 1)
    # Each image sha256 is public exactly once, on a line of its own group.
    public = lines(feed_files, "public", releases.snapshot_name(1))
    carried = {line["sha256"]: line["key"] for line in public if line["sha256"]}
    for i, key in enumerate(real):
        assert carried[f"{i + 1:02x}" * 32] in group(key)


def test_the_lookup_api_answers_as_the_public_feed_does(dataset, publish, feed_files):
    real = url_sha256("https://other.example.org/photos/00040.jpg")
    holds.hold(holder="item:1", url_sha256=real)
    everything = sorted(DatasetRow.objects.values_list("url_sha256", flat=True))
    assert not any(result["blocked"] for result in lookup(everything)["results"])  # approved, not yet published
    publish()
    answer = lookup(everything)
    public = set(keys(feed_files, "public", releases.snapshot_name(1)))
    assert answer["version"] == 1
    assert {result["url_sha256"] for result in answer["results"] if result["blocked"]} == public
    holds.release_hold(holder="item:1")
    publish()
    assert not any(result["blocked"] for result in lookup(everything)["results"])


def test_manifest_and_counts_say_what_decoys_cost_each_dataset(dataset, publish, feed_files):
    holds.hold(holder="item:1", url_sha256=url_sha256("https://big.example.com/photos/00009.jpg"))
    holds.hold(holder="item:2", url_sha256=url_sha256("https://unindexed.example/x.jpg"))
    publish()
    (count,) = decoys.decoy_counts()
    assert (count.dataset, count.release, count.decoys, count.rows) == ("laion-mini", "2026-01", K, 123)
    assert count.share == pytest.approx(K / 123)
    summary = manifest(feed_files, "public", 1)["decoys"]
    assert summary["per_key"] == K
    assert summary["datasets"] == [
        {"dataset": "laion-mini", "release": "2026-01", "decoys": K, "rows": 123, "share": round(K / 123, 9)}
    ]
    assert summary["keys_of_no_url"] == K


def test_decoy_counts_kept_from_release_to_release_equal_a_full_count(dataset, publish, feed_files):
    """Each manifest counts from the previous release and what changed; it must say what counting every decoy says."""
    first = url_sha256("https://big.example.com/photos/00001.jpg")
    second = url_sha256("https://big.example.com/photos/00002.jpg")

    def assert_counted(version: int) -> None:
        full = decoys.published_counts()
        summary = manifest(feed_files, "public", version)["decoys"]
        expected = [("laion-mini", full[dataset.pk])] if full.get(dataset.pk) else []
        assert [(row["dataset"], row["decoys"]) for row in summary["datasets"]] == expected
        assert summary["keys_of_no_url"] == full.get(None, 0)

    holds.hold(holder="item:1", url_sha256=first)
    holds.hold(holder="item:2", url_sha256=url_sha256("https://unindexed.example/x.jpg"))
    publish()
    assert_counted(1)
    holds.hold(holder="item:3", url_sha256=second)
    publish()
    assert_counted(2)
    # A key both groups hold counts once, and stays while one of them is published.
    shared = next(key for key in group(first) if key != first and key not in group(second))
    PublicDecoy.objects.create(entry=BlocklistEntry.objects.get(url_sha256=second), dataset=dataset, url_sha256=shared)
    holds.release_hold(holder="item:1")
    publish()
    assert_counted(3)
    assert manifest(feed_files, "public", 3)["decoys"]["datasets"][0]["decoys"] == K + 1
    holds.hold(holder="item:1 again", url_sha256=first)
    holds.release_hold(holder="item:2")
    publish()
    assert_counted(4)
    publish()  # nothing changed
    assert_counted(5)
    holds.release_hold(holder="item:3")
    holds.release_hold(holder="item:1 again")
    publish()
    assert_counted(6)
    assert manifest(feed_files, "public", 6)["decoys"]["datasets"] == []


def test_the_columnar_snapshot_holds_the_same_keys(dataset, publish, feed_files):
    import pyarrow.parquet as pq

    real = url_sha256("https://big.example.com/photos/00012.jpg")
    holds.hold(holder="item:1", url_sha256=real, image_sha256="cd" * 32, phash=0xF0F0, pdq=7, pdq_quality=80)
    publish()
    for tier in releases.TIERS:
        described = manifest(feed_files, tier, 1)["snapshot_parquet"]
        path = feed_files.path(releases.storage_path(tier, described["path"]))
        table = pq.read_table(path)
        assert [key.hex() for key in table.column("url_sha256").to_pylist()] == keys(
            feed_files, tier, releases.snapshot_name(1)
        )
        assert described["entries"] == table.num_rows
        assert table.schema.field("url_sha256").type.byte_width == 32
    partner = pq.read_table(feed_files.path(releases.storage_path("partner", "snapshot-000001.parquet")))
    assert partner.column("phash").to_pylist() == [(0xF0F0).to_bytes(8, "big")]
    assert partner.column("pdq").to_pylist() == [(7).to_bytes(32, "big")]
    assert partner.column("pdq_quality").to_pylist() == [80]


def drawn_groups(reals: list[str]) -> dict:
    return {
        key: sorted(PublicDecoy.objects.filter(entry__url_sha256=key).values_list("dataset_id", "url_sha256"), key=str)
        for key in reals
    }


@pytest.mark.postgres
@pytest.mark.parametrize(("k", "slack"), [(K, decoys._SLACK), (K, 0), (2, 0)])
def test_postgres_draws_the_same_decoys_as_the_rowwise_draw(dataset, k, slack, monkeypatch):
    """The sorted draw's picks are the one-by-one draw's, where groups compete: a crowded host (its windows
    overlap, so sides are read deeper), windows off either end of a circle, a tiny host that borrows from its
    dataset, a URL in two datasets (once under another spelling of its host), a key that is already another
    group's decoy, and a URL in no dataset. A
    first read with no slack makes every side that lost rows to an earlier group be read again deeper."""
    monkeypatch.setattr(decoys, "_SLACK", slack)
    other = Dataset.objects.create(name="other-mini")
    shared = add_rows(other, "big.example.com", 5)  # the same URLs as big.example.com's first five in `dataset`
    add_rows(other, "big.example.com", 20, start=500)
    # The same URLs again, the host spelled with its final dot: the same keys on another host's circle.
    third = Dataset.objects.create(name="third-mini")
    add_rows(third, "big.example.com.", 30, start=10)
    crowded = [url_sha256(f"https://big.example.com/photos/{i:05d}.jpg") for i in range(0, 60, 3)]
    tiny = [url_sha256(f"https://tiny.example.net/photos/{i:05d}.jpg") for i in range(3)]
    circle = sorted(host_keys(dataset, "other.example.org"))
    ends = [circle[0], circle[1], circle[-1]]  # the first and last rows of their circle
    nowhere = [url_sha256("https://unindexed.example/a.jpg")]
    reals = [*crowded, *tiny, *ends, *nowhere]
    assert url_sha256(shared[0]) in crowded
    for i, key in enumerate(reals):
        holds.hold(holder=f"item:{i}", url_sha256=key)
    decoys.draw_decoys(k=k)
    # A later entry whose key is already a decoy of an earlier group: it draws k + 1.
    late = next(
        key for key in host_keys(dataset, "other.example.org") if PublicDecoy.objects.filter(url_sha256=key).exists()
    )
    holds.hold(holder="item:late", url_sha256=late)
    decoys.draw_decoys(k=k)
    reals.append(late)
    fast = drawn_groups(reals)
    assert len(fast[late]) == k + 1
    # The same history, one window at a time.
    PublicDecoy.objects.all().delete()
    BlocklistHold.objects.filter(holder="item:late").delete()
    BlocklistEntry.objects.filter(url_sha256=late).delete()
    BlocklistEntry.objects.update(decoys_drawn=False)
    monkeypatch.setattr(decoys, "_draw_sorted", decoys._draw_rowwise)
    decoys.draw_decoys(k=k)
    holds.hold(holder="item:late", url_sha256=late)
    decoys.draw_decoys(k=k)
    assert drawn_groups(reals) == fast
    assert all(len(members) >= k for members in fast.values())


def test_groups_drawn_in_one_release_share_no_decoy(dataset, publish, feed_files):
    reals = [url_sha256(f"https://tiny.example.net/photos/{i:05d}.jpg") for i in range(2)]
    reals += [url_sha256(f"https://big.example.com/photos/{i:05d}.jpg") for i in range(20, 25)]
    for i, key in enumerate(reals):
        holds.hold(holder=f"item:{i}", url_sha256=key)
    publish()
    groups = [set(group(key)) for key in reals]
    assert all(len(members) == K + 1 for members in groups)
    assert len(set().union(*groups)) == len(reals) * (K + 1)  # pairwise disjoint
    assert len(keys(feed_files, "public", releases.snapshot_name(1))) == len(reals) * (K + 1)


def public_history(storage, versions: int) -> set[str]:
    """Every key the public tier carried in any snapshot or delta of releases 1..versions: what the adversary holds."""
    seen: set[str] = set()
    for version in range(1, versions + 1):
        described = manifest(storage, "public", version)
        for part in ("snapshot", "delta"):
            seen.update(keys(storage, "public", described[part]["path"]))
    return seen


def test_a_decoy_that_becomes_real_brings_k_plus_one_new_keys(dataset, publish, feed_files):
    first = url_sha256("https://big.example.com/photos/00017.jpg")
    holds.hold(holder="item:1", url_sha256=first, image_sha256="aa" * 32)
    publish()
    before = set(group(first))
    decoy = next(key for key in sorted(before) if key != first)
    holds.hold(holder="item:2", url_sha256=decoy, image_sha256="bb" * 32)  # someone asks for a decoy's URL
    publish()
    own = set(group(decoy)) - {decoy}
    assert len(own) == K + 1 and not own & before
    delta = {line["key"]: line for line in lines(feed_files, "public", releases.delta_name(2))}
    # Its own line was public already and does not change; its image sha256 sits on one of its new keys.
    assert set(delta) == own
    carriers = [line["key"] for line in delta.values() if line["sha256"] == "bb" * 32]
    assert len(carriers) == 1 and carriers[0] in own
    holds.release_hold(holder="item:1")  # the group it was a decoy of leaves; its own key stays with it
    publish()
    removed = [line["key"] for line in lines(feed_files, "public", releases.delta_name(3)) if line["op"] == "remove"]
    assert set(removed) == before - {decoy}
    assert decoy in keys(feed_files, "public", releases.snapshot_name(3))


def test_real_keys_are_at_most_one_in_k_plus_one_of_the_whole_history(dataset, publish, feed_files):
    # Requests arrive and are withdrawn over releases, some for URLs that were decoys, one blocked again.
    rows = {
        key: url
        for url, key in DatasetRow.objects.filter(dataset=dataset, url__contains="big.example.com").values_list(
            "url", "url_sha256"
        )
    }
    real: set[str] = set()
    version = 0

    def block(key: str) -> None:
        holds.hold(holder=f"item:{key}", url_sha256=key)
        real.add(key)

    block(url_sha256("https://big.example.com/photos/00005.jpg"))
    block(url_sha256("https://other.example.org/photos/00005.jpg"))
    publish()
    version += 1
    decoy_of_first = next(k for k in group(url_sha256("https://big.example.com/photos/00005.jpg")) if k not in real)
    block(decoy_of_first)
    publish()
    version += 1
    holds.release_hold(holder=f"item:{url_sha256('https://big.example.com/photos/00005.jpg')}")
    block(url_sha256("https://other.example.org/photos/00050.jpg"))
    publish()
    version += 1
    holds.release_hold(holder=f"item:{decoy_of_first}")
    holds.hold(holder="item:again", url_sha256=url_sha256("https://big.example.com/photos/00005.jpg"))
    publish()
    version += 1
    for number in range(1, version + 1):  # no release carries a real entry without its whole group
        public = set(keys(feed_files, "public", manifest(feed_files, "public", number)["snapshot"]["path"]))
        published = keys(feed_files, "partner", manifest(feed_files, "partner", number)["snapshot"]["path"])
        assert published
        for key in published:
            assert len(group(key)) >= K + 1 and set(group(key)) <= public
    listed = set(DatasetRow.objects.values_list("url_sha256", flat=True))
    candidates = public_history(feed_files, version) & listed
    assert decoy_of_first in rows and real <= candidates
    assert len(real) * (K + 1) <= len(candidates)  # precision over the history <= 1 / (k + 1)


@pytest.mark.postgres
def test_the_draw_leaves_the_planner_as_it_found_it(dataset):
    """The draw turns plans off for its own reads; the rest of the publisher's transaction must not inherit that."""
    holds.hold(holder="item:1", url_sha256=url_sha256("https://big.example.com/photos/00003.jpg"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # as the publisher does
        decoys.draw_decoys()
        assert PublicDecoy.objects.count() == K
        cursor.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_seqscan'), current_setting('jit')"
        )
        assert cursor.fetchone() == ("on", "on", "off")


@pytest.mark.postgres
def test_the_draw_in_chunks_of_hosts_gives_the_same_picks(dataset, monkeypatch):
    """Hosts drawn a chunk at a time (each chunk stored before the next reads) give the one-by-one draw's picks."""
    reals = [url_sha256(f"https://{host}/photos/{i:05d}.jpg") for host in ("big.example.com", "other.example.org",
             "tiny.example.net") for i in range(0, 3)]  # fmt: skip
    for i, key in enumerate(reals):
        holds.hold(holder=f"item:{i}", url_sha256=key)
    monkeypatch.setattr(decoys, "_CHUNK", 2)
    decoys.draw_decoys()
    chunked = drawn_groups(reals)
    PublicDecoy.objects.all().delete()
    BlocklistEntry.objects.update(decoys_drawn=False)
    monkeypatch.setattr(decoys, "_draw_sorted", decoys._draw_rowwise)
    decoys.draw_decoys()
    assert drawn_groups(reals) == chunked


@pytest.mark.postgres
def test_the_postgres_snapshot_query_gives_the_lines_of_the_grouping_one(dataset):
    """The one-sort snapshot (``DISTINCT ON``) keeps, for a key two groups hold, the line ``_lines_sql`` keeps."""
    first = url_sha256("https://big.example.com/photos/00001.jpg")
    second = url_sha256("https://big.example.com/photos/00002.jpg")
    holds.hold(holder="item:1", url_sha256=first, image_sha256="aa" * 32)
    holds.hold(holder="item:2", url_sha256=second, image_sha256="bb" * 32)
    decoys.draw_decoys()
    # The second entry also holds the key that carries the first one's sha256.
    carrier = min(key for key in group(first) if key != first)
    PublicDecoy.objects.get_or_create(entry=BlocklistEntry.objects.get(url_sha256=second), dataset=dataset,
                                      url_sha256=carrier)  # fmt: skip
    grouping = (
        f"WITH grp AS ({feed_sql.groups('blocked')}) SELECT k, 'add', sha FROM ({feed_sql.lines('grp')}) s ORDER BY k"
    )
    with connection.cursor() as cursor:
        cursor.execute(grouping)
        expected = cursor.fetchall()
        cursor.execute(feed_sql.public_snapshot())
        assert cursor.fetchall() == expected
    lines = {key: sha for key, _, sha in expected}
    assert len(lines) == len(expected)  # the shared key once
    assert lines[carrier] in {"aa" * 32, "bb" * 32}  # with a sha256 of one of its groups, in both queries
