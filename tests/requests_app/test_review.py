import threading

import pytest
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, connection

from requests_app import services
from requests_app.exceptions import TransitionError
from requests_app.models import ItemDecision, RemovalItem, RemovalRequest, RemovalState, RequestEvent
from tests.requests_app.builders import in_review, reviewer

STRONG, WEAK, NONE, UNREACHABLE = "match_strong", "match_weak", "no_match", "unreachable"


def blocked_states(removal) -> list[str]:
    return list(removal.items.filter(blocked=True).order_by("id").values_list("state", flat=True))


@pytest.mark.django_db
def test_approval_blocks_exactly_the_matching_items():
    removal = in_review([STRONG, WEAK, NONE, UNREACHABLE])
    services.approve_removal(removal, reviewer=reviewer())
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.APPROVED
    assert blocked_states(removal) == [STRONG, WEAK]


@pytest.mark.django_db
def test_per_item_decisions_override_the_verdict():
    removal = in_review([STRONG, WEAK, NONE])
    rita = reviewer()
    strong, weak, none = removal.items.order_by("id")
    services.decide_item(weak, reviewer=rita, decision=ItemDecision.REJECT)
    services.decide_item(none, reviewer=rita, decision=ItemDecision.APPROVE)
    services.approve_removal(removal, reviewer=rita)
    assert blocked_states(removal) == [STRONG, NONE]
    actions = list(RequestEvent.objects.filter(removal=removal).values_list("action", flat=True))
    assert actions.count("item_decision") == 2


@pytest.mark.django_db
def test_nothing_to_block_means_no_approval():
    removal = in_review([NONE, UNREACHABLE])
    with pytest.raises(TransitionError, match="no matching item"):
        services.approve_removal(removal, reviewer=reviewer())
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW


@pytest.mark.django_db
@pytest.mark.parametrize("act", ["approve", "reject", "claim", "decide"])
def test_no_decision_without_the_review_permission(act):
    removal = in_review([STRONG])
    outsider = reviewer("otto", can_review=False)
    calls = {
        "approve": lambda: services.approve_removal(removal, reviewer=outsider),
        "reject": lambda: services.reject_removal(removal, reviewer=outsider, reason="no_match"),
        "claim": lambda: services.claim_removal(removal, reviewer=outsider),
        "decide": lambda: services.decide_item(removal.items.get(), reviewer=outsider, decision="reject"),
    }
    events = RequestEvent.objects.filter(removal=removal).count()
    with pytest.raises(PermissionDenied):
        calls[act]()
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert (stored.state, stored.assigned_to) == (RemovalState.IN_REVIEW, None)
    assert RequestEvent.objects.filter(removal=removal).count() == events


@pytest.mark.django_db
def test_rejection_needs_a_reason_from_the_list_and_deletes_the_email():
    removal = in_review([NONE], contact_email="me@example.org")
    rita = reviewer()
    with pytest.raises(TransitionError, match="reason"):
        services.reject_removal(removal, reviewer=rita, reason="because")
    with pytest.raises(TransitionError, match="note"):
        services.reject_removal(removal, reviewer=rita, reason="other", note="  ")
    services.reject_removal(removal, reviewer=rita, reason="no_match", note="Different person.")
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert (stored.state, stored.decision_reason, stored.contact_email) == ("rejected", "no_match", "")
    event = RequestEvent.objects.filter(removal=removal).latest("id")
    assert (event.actor_label, event.to_state) == ("rita", "rejected")
    assert "Different person." in event.reason


@pytest.mark.django_db
def test_the_requester_hears_of_the_decision_without_the_secret(mailoutbox, django_capture_on_commit_callbacks):
    removal = in_review([NONE], contact_email="me@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_removal(removal, reviewer=reviewer(), reason="no_match")
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["me@example.org"]
    assert removal.case in mailoutbox[0].body


@pytest.mark.django_db
def test_claiming_assigns_and_records_it():
    removal = in_review([STRONG])
    rita, sam = reviewer(), reviewer("sam")
    services.claim_removal(removal, reviewer=rita)
    services.claim_removal(removal, reviewer=rita)  # claiming what you have is a no-op
    stale = RemovalRequest.objects.get(pk=removal.pk)
    services.claim_removal(stale, reviewer=sam)
    assert RemovalRequest.objects.get(pk=removal.pk).assigned_to == sam
    claims = RequestEvent.objects.filter(removal=removal, action="claim").values_list("actor_label", flat=True)
    assert list(claims) == ["rita", "sam"]
    # A copy read before sam's claim loses the compare-and-swap.
    outdated = RemovalRequest.objects.get(pk=removal.pk)
    outdated.assigned_to_id = rita.pk
    with pytest.raises(TransitionError, match="someone else"):
        services.claim_removal(outdated, reviewer=reviewer("tia"))


@pytest.mark.django_db
def test_items_can_be_decided_only_in_review():
    removal = in_review([STRONG])
    rita = reviewer()
    services.approve_removal(removal, reviewer=rita)
    with pytest.raises(TransitionError, match="not in review"):
        services.decide_item(removal.items.get(), reviewer=rita, decision="reject")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_second_of_two_concurrent_decisions_loses():
    """Two reviewers press approve and reject at the same moment: exactly one wins."""
    assert connection.vendor == "postgresql"  # SQLite serialises writers: the race would not happen
    removal = in_review([STRONG])
    rita, sam = reviewer(), reviewer("sam")
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(name, act):
        try:
            mine = RemovalRequest.objects.get(pk=removal.pk)  # both read `in_review`
            start.wait(timeout=10)
            act(mine)
            outcomes[name] = "won"
        except TransitionError as exc:
            outcomes[name] = str(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [
        threading.Thread(target=decide, args=("rita", lambda r: services.approve_removal(r, reviewer=rita))),
        threading.Thread(
            target=decide, args=("sam", lambda r: services.reject_removal(r, reviewer=sam, reason="no_match"))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["rita", "sam"]
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1
    loser = "sam" if winners == ["rita"] else "rita"
    assert "changed by someone else" in outcomes[loser]
    decisions = RequestEvent.objects.filter(removal=removal, to_state__in=["approved", "rejected"])
    assert decisions.count() == 1
    assert decisions.get().actor_label == winners[0]
    assert RemovalRequest.objects.get(pk=removal.pk).state == ("approved" if winners == ["rita"] else "rejected")


@pytest.mark.django_db
def test_blocked_by_default_says_what_items_to_block_does():
    removal = in_review(["match_strong", "match_weak", "no_match", "match_strong"])
    found = removal.items.order_by("id").last()
    RemovalItem.objects.filter(pk=found.pk).update(found_by_system=True)
    by_rule = {item.pk for item in removal.items.all() if services.blocked_by_default(item)}
    assert by_rule == set(services.items_to_block(removal).values_list("pk", flat=True))
    assert found.pk not in by_rule and len(by_rule) == 2
