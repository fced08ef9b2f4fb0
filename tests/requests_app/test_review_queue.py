"""The reviewer's way through the work: the queues first on the admin index, the next case, the breadcrumb."""

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from optout.models import Dataset
from requests_app import services
from requests_app.admin.queue import queues
from requests_app.models import RemovalRequest
from tests.requests_app.builders import in_review
from tests.users import staff

groups_migration = importlib.import_module("requests_app.migrations.0003_reviewer_groups")


@pytest.fixture
def rhea_client(client, db):
    groups_migration.create_groups(global_apps, SimpleNamespace(connection=connection))
    user = staff("rhea", groups=(Group.objects.get(name="reviewer"),))
    client.force_login(user)
    client.user = user
    return client


def aged(removal, *, days: int) -> RemovalRequest:
    RemovalRequest.objects.filter(pk=removal.pk).update(created_at=timezone.now() - timedelta(days=days))
    return RemovalRequest.objects.get(pk=removal.pk)


def test_the_admin_index_shows_the_queues_first(rhea_client):
    aged(in_review(["match_strong"]), days=3)
    aged(in_review(["no_match"]), days=1)
    mine = in_review(["match_weak"])
    services.claim_removal(mine, reviewer=rhea_client.user)
    html = rhea_client.get("/admin/").content.decode()
    assert html.index("Review queues") < html.index("app-requests_app")  # before the list of apps
    assert (
        'Waiting for a reviewer (unclaimed)</strong></a>:\n        <span class="review-queue-count">2 waiting</span>, oldest 3\xa0days ago'
        in html
    )
    assert 'Claimed by you</strong></a>:\n        <span class="review-queue-count">1 waiting</span>' in html
    assert "Take the next case" in html


def test_each_queue_links_to_the_cases_it_counts(rhea_client):
    in_review(["match_strong"])
    for queue in queues(rhea_client.user):
        response = rhea_client.get(queue.url)
        assert response.status_code == 200, queue.url
        assert response.context["cl"].result_count == queue.waiting, queue.label


def test_next_case_is_the_oldest_unclaimed_one_and_follows_a_decision(rhea_client):
    newer = aged(in_review(["match_strong"]), days=1)
    older = aged(in_review(["match_strong"]), days=5)
    claimed = aged(in_review(["match_strong"]), days=9)
    services.claim_removal(claimed, reviewer=rhea_client.user)
    response = rhea_client.get("/admin/requests_app/removalrequest/next/")
    assert response["Location"] == f"/admin/requests_app/removalrequest/{older.pk}/review/"
    rhea_client.post(f"/admin/requests_app/removalrequest/{older.pk}/review/", {"action": "approve"})
    page = rhea_client.get(f"/admin/requests_app/removalrequest/{older.pk}/review/").content.decode()
    assert f'href="/admin/requests_app/removalrequest/{newer.pk}/review/">Next case</a>' in page
    RemovalRequest.objects.filter(pk=newer.pk).update(state="rejected")
    empty = rhea_client.get("/admin/requests_app/removalrequest/next/", follow=True)
    assert "No case is waiting for a reviewer." in empty.content.decode()


def test_the_breadcrumb_names_each_level_once_and_the_dataset_reads_as_name_and_release(rhea_client):
    dataset = Dataset.objects.create(name="laion-5b", release="2022")
    removal = in_review(["match_strong"], dataset=dataset)
    html = rhea_client.get(f"/admin/requests_app/removalrequest/{removal.pk}/review/").content.decode()
    crumbs = html[
        html.index('<div class="breadcrumbs">') : html.index("</div>", html.index('<div class="breadcrumbs">'))
    ]
    assert "Removal requests</a>" in crumbs and crumbs.count("Removal requests") == 1
    assert "Review</a>" in crumbs
    assert "<dd>laion-5b, 2022</dd>" in html
    changelist = rhea_client.get("/admin/requests_app/removalrequest/").content.decode()
    assert "laion-5b, 2022" in changelist
    crumbs = changelist[changelist.index('<div class="breadcrumbs">') :]
    assert crumbs[: crumbs.index("</div>")].count("Removal requests") == 1
