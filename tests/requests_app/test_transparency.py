"""The public transparency report: totals by month, the median time to a decision, the current release; nothing per case."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from optout.blocklist import decoys, holds
from optout.client.canonical import url_sha256
from optout.index.importer import count_rows
from optout.models import Dataset, DatasetRow, Release
from requests_app import services
from requests_app.models import RemovalRequest
from tests.optout.conftest import feed_files, publish, signing_key  # noqa: F401  (fixtures)
from tests.requests_app.builders import in_review, reviewer, submit


def decide_at(monkeypatch, moment: datetime, decide) -> None:
    """Run a decision as if at ``moment``: its event is written then (events are append-only, never edited)."""
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: moment)
        decide()


def arrived_at(removal, moment: datetime) -> None:
    RemovalRequest.objects.filter(pk=removal.pk).update(created_at=moment)


@pytest.fixture
def decided_cases(db, monkeypatch):
    rita = reviewer()
    approved = in_review(["match_strong"])
    arrived_at(approved, datetime(2026, 10, 3, 9, tzinfo=UTC))
    decide_at(
        monkeypatch, datetime(2026, 10, 3, 15, tzinfo=UTC), lambda: services.approve_removal(approved, reviewer=rita)
    )
    rejected = in_review(["no_match"])
    arrived_at(rejected, datetime(2026, 10, 30, tzinfo=UTC))
    decide_at(
        monkeypatch,
        datetime(2026, 11, 2, tzinfo=UTC),
        lambda: services.reject_removal(rejected, reviewer=rita, reason="no_match"),
    )
    withdrawn, _ = submit()
    services.withdraw_removal(withdrawn)
    return approved, rejected, withdrawn


def test_the_report_counts_by_month_and_gives_the_median_time_to_a_decision(client, decided_cases):
    approved, rejected, withdrawn = decided_cases
    body = client.get("/transparency/?format=json").json()
    months = {month["month"]: month for month in body["months"]}
    assert months["2026-10"] == {"month": "2026-10", "received": 2, "approved": 1, "rejected": 0, "withdrawn": 0}
    assert months["2026-11"]["rejected"] == 1
    now = timezone.now().strftime("%Y-%m")
    assert months[now]["received"] >= 1 and months[now]["withdrawn"] == 1
    assert body["totals"] == {"month": "all", "received": 3, "approved": 1, "rejected": 1, "withdrawn": 1}
    assert body["decisions"] == 2
    assert body["median_hours_to_decision"] == pytest.approx((6 + 72) / 2)


def test_the_report_holds_no_per_case_data(client, decided_cases):
    text = client.get("/transparency/?format=json").content.decode() + client.get("/transparency/").content.decode()
    for removal in decided_cases:
        assert removal.case not in text
        for item in removal.items.all():
            assert item.url not in text and item.url_sha256 not in text
    assert "rita" not in text


def test_the_page_shows_the_current_release(client, db):
    now = timezone.now()
    for version in (1, 2):
        Release.objects.create(
            version=version,
            previous_id=version - 1 or None,
            created_at=now - timedelta(hours=3 - version),
            expires_at=now + timedelta(days=2),
            entries=40 + version,
            added=1,
            removed=0,
            state_sha256="0" * 64,
            key_id="0" * 16,
            public_key="x",
            tiers={},
        )
    html = client.get("/transparency/")
    assert html.status_code == 200
    assert "public" in html["Cache-Control"]
    assert "number <strong>2</strong>" in html.content.decode()
    assert "<strong>42</strong> entries" in html.content.decode()
    assert client.get("/transparency/", HTTP_ACCEPT="application/json").json()["release"]["version"] == 2


def test_an_empty_service_has_an_honest_report(client, db):
    html = client.get("/transparency/").content.decode()
    assert "No requests yet." in html
    assert "no decision yet" in html
    assert "No release has been published yet." in html
    assert client.get("/transparency/?format=json").json()["median_hours_to_decision"] is None


def test_the_report_shows_the_decoys_per_dataset(client, db, feed_files, publish):  # noqa: F811  (the fixtures)
    dataset = Dataset.objects.create(name="laion-mini", release="2026-01")
    urls = [f"https://big.example.com/photos/{i:05d}.jpg" for i in range(40)]
    DatasetRow.objects.bulk_create([DatasetRow(dataset=dataset, url=url, url_sha256=url_sha256(url)) for url in urls])
    count_rows(dataset.pk, len(urls))  # as the importer does
    holds.hold(holder="item:1", url_sha256=url_sha256(urls[7]))
    publish()
    (expected,) = decoys.decoy_counts()
    assert expected.decoys > 0
    body = client.get("/transparency/?format=json").json()
    assert body["decoys"] == [
        {"dataset": "laion-mini", "release": "2026-01", "decoys": expected.decoys, "rows": 40, "share": expected.share}
    ]
    html = client.get("/transparency/").content.decode()
    assert "Decoys in the public blocklist" in html
    assert f"<td>{expected.decoys}</td><td>40</td>" in html
    assert url_sha256(urls[7]) not in html and urls[7] not in html


def test_the_decoys_are_the_counts_the_latest_release_kept(client, db, django_assert_max_num_queries):
    # The publisher keeps each release's decoy counts on it: the page reads them instead of counting every decoy.
    dataset = Dataset.objects.create(name="laion-mini", release="2026-01")
    count_rows(dataset.pk, 1_000)
    now = timezone.now()
    Release.objects.create(
        version=1,
        created_at=now,
        expires_at=now + timedelta(days=2),
        entries=4,
        added=4,
        removed=0,
        state_sha256="0" * 64,
        key_id="0" * 16,
        public_key="x",
        tiers={"public": {"decoy_counts": [[None, 3], [dataset.pk, 17]]}},
    )
    # No decoy is in the database: a count would find none.
    assert decoys.published_counts() == {}
    with django_assert_max_num_queries(6):
        body = client.get("/transparency/?format=json").json()
    assert body["decoys"] == [
        {"dataset": "laion-mini", "release": "2026-01", "decoys": 17, "rows": 1_000, "share": 0.017}
    ]
