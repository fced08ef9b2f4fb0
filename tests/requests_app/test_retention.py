"""Reference signals go when a case ends; after the retention period a closed case keeps its audit trail only."""

from datetime import timedelta

import pytest
from django.utils import timezone

from optout.models import BlocklistHold
from requests_app import retention, services, tasks
from requests_app.models import ItemState, ReferenceSignal, RemovalItem, RemovalRequest, RequestEvent
from tests.requests_app.builders import in_review, reviewer, submit


def age(removal: RemovalRequest, days: int) -> None:
    """As if the case had reached its state ``days`` ago."""
    RemovalRequest.objects.filter(pk=removal.pk).update(state_changed_at=timezone.now() - timedelta(days=days))


@pytest.mark.django_db
def test_withdrawing_deletes_the_reference_signals_at_once():
    removal, _ = submit()
    assert ReferenceSignal.objects.filter(removal=removal).exists()

    services.withdraw_removal(removal)

    assert not ReferenceSignal.objects.filter(removal=removal).exists()
    assert RequestEvent.objects.filter(removal=removal, to_state="withdrawn").exists()


@pytest.mark.django_db
def test_a_rejected_case_keeps_its_signals_for_the_appeal_window_only(settings):
    settings.OPTOUT_APPEAL_WINDOW_DAYS = 30
    removal = in_review([ItemState.NO_MATCH])
    services.reject_removal(removal, reviewer=reviewer(), reason="no_match")
    kept_open = in_review([ItemState.MATCH_STRONG])  # still in review: never touched
    age(kept_open, 400)

    age(removal, 29)
    retention.purge_closed_cases()
    assert ReferenceSignal.objects.filter(removal=removal).exists()

    age(removal, 31)
    assert retention.purge_closed_cases().reference_signals == 1
    assert not ReferenceSignal.objects.filter(removal=removal).exists()
    assert ReferenceSignal.objects.filter(removal=kept_open).exists()


@pytest.mark.django_db
def test_a_published_case_past_its_appeal_window_loses_its_signals_but_keeps_its_blocks(settings):
    settings.OPTOUT_APPEAL_WINDOW_DAYS = 30
    removal = in_review([ItemState.MATCH_STRONG, ItemState.NO_MATCH])
    services.approve_removal(removal, reviewer=reviewer())
    RemovalRequest.objects.filter(pk=removal.pk).update(state="published")
    age(removal, 31)

    retention.purge_closed_cases()

    assert not ReferenceSignal.objects.filter(removal=removal).exists()
    blocked = removal.items.get(blocked=True)
    assert BlocklistHold.objects.filter(holder=f"removal-item:{blocked.pk}").exists()


@pytest.mark.django_db
def test_after_the_retention_period_a_closed_case_keeps_only_its_audit_trail(settings):
    settings.OPTOUT_RETENTION_DAYS = 180
    removal = in_review([ItemState.MATCH_STRONG, ItemState.NO_MATCH])
    rita = reviewer()
    services.approve_removal(removal, reviewer=rita)
    RemovalRequest.objects.filter(pk=removal.pk).update(state="published", contact_email="me@example.org")
    events_before = RequestEvent.objects.filter(removal=removal).count()
    blocked, unblocked = removal.items.get(blocked=True), removal.items.get(blocked=False)
    RemovalItem.objects.filter(pk=unblocked.pk).update(image_phash="00ff00ff00ff00ff")

    age(removal, 179)
    retention.purge_closed_cases()
    assert RemovalItem.objects.get(pk=unblocked.pk).url

    age(removal, 181)
    purged = retention.purge_closed_cases()

    assert (purged.item_urls, purged.contacts) == (1, 1)
    unblocked.refresh_from_db()
    assert (unblocked.url, unblocked.image_phash, unblocked.image_sha256) == ("", "", "")
    assert unblocked.state == ItemState.NO_MATCH and unblocked.url_sha256  # the verdict stays
    blocked_after = RemovalItem.objects.get(pk=blocked.pk)
    assert blocked_after.url == blocked.url and blocked_after.image_sha256 == blocked.image_sha256
    assert RemovalRequest.objects.get(pk=removal.pk).contact_email == ""
    assert RequestEvent.objects.filter(removal=removal).count() == events_before
    assert BlocklistHold.objects.filter(holder=f"removal-item:{blocked.pk}").exists()
    assert retention.purge_closed_cases() == retention.Purged(0, 0, 0)  # idempotent


@pytest.mark.django_db
def test_a_monitored_case_keeps_its_signals_until_monitoring_ends(settings):
    settings.OPTOUT_APPEAL_WINDOW_DAYS = 30
    removal = in_review([ItemState.NO_MATCH])
    services.reject_removal(removal, reviewer=reviewer(), reason="no_match")
    age(removal, 31)
    RemovalRequest.objects.filter(pk=removal.pk).update(monitor_until=timezone.now() + timedelta(days=60))

    retention.purge_closed_cases()
    assert ReferenceSignal.objects.filter(removal=removal).exists()

    RemovalRequest.objects.filter(pk=removal.pk).update(monitor_until=timezone.now() - timedelta(days=1))
    retention.purge_closed_cases()
    assert not ReferenceSignal.objects.filter(removal=removal).exists()


@pytest.mark.django_db
def test_an_approved_case_is_not_closed_and_keeps_everything(settings):
    removal = in_review([ItemState.MATCH_STRONG, ItemState.NO_MATCH])
    services.approve_removal(removal, reviewer=reviewer())
    age(removal, 1000)

    retention.purge_closed_cases()

    assert ReferenceSignal.objects.filter(removal=removal).exists()
    assert all(item.url for item in removal.items.all())


@pytest.mark.django_db
def test_the_daily_task_runs_the_purge_and_is_scheduled(settings):
    removal, _ = submit()
    services.withdraw_removal(removal)
    ReferenceSignal.objects.create(
        removal=removal, image_index=0, source="client", phash="0" * 16, sha256="0" * 64, descriptor_key="t"
    )

    tasks.purge_closed_cases()

    assert not ReferenceSignal.objects.filter(removal=removal).exists()
    assert settings.CELERY_BEAT_SCHEDULE["purge-closed-cases"]["task"] == "requests_app.tasks.purge_closed_cases"


@pytest.mark.django_db
def test_a_reversed_case_loses_its_signals_at_the_next_purge():
    from requests_app import aftercare
    from tests.users import staff

    removal = in_review([ItemState.MATCH_STRONG])
    services.approve_removal(removal, reviewer=reviewer())
    aftercare.reverse_removal(
        removal, reviewer=staff("pia", "review_removalrequest", "publish_blocklist"), reason="Blocked by mistake."
    )
    assert ReferenceSignal.objects.filter(removal=removal).exists()  # not monitored: the purge takes them

    retention.purge_closed_cases()

    assert not ReferenceSignal.objects.filter(removal=removal).exists()
