from datetime import timedelta

import pytest
from django.utils import timezone

from requests_app import services, tasks
from requests_app.models import RemovalRequest
from tests.requests_app.builders import force_state, submit


def age(removal, seconds: int) -> None:
    RemovalRequest.objects.filter(pk=removal.pk).update(check_deadline=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.django_db
def test_a_request_never_picked_up_is_queued_again_once_per_deadline():
    fresh, _ = submit()
    lost, _ = submit()
    age(lost, 1)
    assert services.requeue_stuck() == [lost.pk]
    assert services.requeue_stuck() == []  # its deadline moved on
    assert sorted(services.requeue_stuck(now=timezone.now() + timedelta(days=1))) == [fresh.pk, lost.pk]


@pytest.mark.django_db
def test_a_request_stuck_in_checking_past_its_deadline_is_queued_again():
    removal, _ = submit()
    services.start_checking(removal)
    assert services.requeue_stuck() == []
    age(removal, 1)
    assert services.requeue_stuck() == [removal.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["in_review", "approved", "rejected", "published", "withdrawn"])
def test_requests_past_checking_are_left_alone(state):
    removal, _ = submit()
    age(removal, 60)
    force_state(removal, state)
    assert services.requeue_stuck() == []


@pytest.mark.django_db
def test_the_beat_task_sends_each_lost_request_to_the_queue(monkeypatch):
    lost, _ = submit()
    age(lost, 5)
    sent = []
    monkeypatch.setattr(tasks.verify_removal, "delay", sent.append)
    tasks.sweep_stuck_requests()
    assert sent == [lost.pk]
