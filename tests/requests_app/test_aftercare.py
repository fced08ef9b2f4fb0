"""After the first decision: appeals, reversing an approval, and links added to a case."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from optout.blocklist import releases
from optout.models import BlocklistEntry, BlocklistHold
from requests_app import aftercare, services
from requests_app.exceptions import TransitionError
from requests_app.models import ItemState, RemovalItem, RemovalRequest, RequestEvent
from tests.optout.conftest import feed_files, lines, publish, signing_key  # noqa: F401 (fixtures)
from tests.requests_app.builders import in_review, reference, reviewer, submit
from tests.users import staff

pytestmark = pytest.mark.django_db


def publisher(username: str = "pia"):
    return staff(username, "review_removalrequest", "publish_blocklist")


def rejected(by=None, **kwargs) -> RemovalRequest:
    removal = in_review(["match_weak", "no_match"], **kwargs)
    return services.reject_removal(removal, reviewer=by or reviewer(), reason="insufficient_evidence")


# --- Appeals ------------------------------------------------------------------------------


def test_an_appeal_reopens_the_rejected_items_for_another_reviewer_who_approves():
    rita = reviewer("rita")
    removal = rejected(by=rita)
    assert set(removal.items.values_list("decided_at", flat=True)) == {removal.state_changed_at}

    aftercare.appeal_removal(removal, note="The first link is my photo, cropped.")

    removal.refresh_from_db()
    assert removal.state == "appealed"
    assert removal.appeal_note == "The first link is my photo, cropped."
    assert removal.assigned_to is None
    assert not removal.items.exclude(decided_at=None).exists()
    services.approve_removal(removal, reviewer=reviewer("otto"))
    removal.refresh_from_db()
    assert removal.state == "approved"
    assert list(removal.items.filter(blocked=True).values_list("state", flat=True)) == [ItemState.MATCH_WEAK]
    assert BlocklistHold.objects.count() == 1
    states = list(RequestEvent.objects.filter(removal=removal, action="transition").values_list("to_state", flat=True))
    assert states == ["received", "rejected", "appealed", "approved"]


def test_the_reviewer_who_rejected_cannot_decide_or_claim_the_appeal():
    rita = reviewer("rita")
    removal = rejected(by=rita)
    aftercare.appeal_removal(removal, note="Please look again.")
    for act in (
        lambda: services.approve_removal(removal, reviewer=rita),
        lambda: services.reject_removal(removal, reviewer=rita, reason="no_match"),
        lambda: services.claim_removal(removal, reviewer=rita),
    ):
        with pytest.raises(TransitionError, match="another reviewer"):
            act()
    assert RemovalRequest.objects.get(pk=removal.pk).state == "appealed"


def test_an_appeal_outcome_is_final():
    removal = rejected(by=reviewer("rita"))
    aftercare.appeal_removal(removal, note="Please look again.")
    services.reject_removal(removal, reviewer=reviewer("otto"), reason="no_match")
    removal.refresh_from_db()
    assert removal.state == "rejected"
    assert not aftercare.can_appeal(removal)
    with pytest.raises(TransitionError, match="appealed already"):
        aftercare.appeal_removal(removal, note="And again.")
    assert RemovalRequest.objects.get(pk=removal.pk).state == "rejected"


def test_an_appeal_after_the_window_is_refused(settings):
    settings.OPTOUT_APPEAL_WINDOW_DAYS = 7
    removal = rejected()
    RemovalRequest.objects.filter(pk=removal.pk).update(state_changed_at=timezone.now() - timedelta(days=8))
    removal.refresh_from_db()
    assert not aftercare.can_appeal(removal)
    with pytest.raises(TransitionError, match="time to appeal"):
        aftercare.appeal_removal(removal, note="Too late?")
    assert RemovalRequest.objects.get(pk=removal.pk).state == "rejected"


@pytest.mark.parametrize(("note", "message"), [("  ", "why the decision"), ("x" * 1001, "under 1000")])
def test_an_appeal_needs_a_short_note(note, message):
    removal = rejected()
    with pytest.raises(TransitionError, match=message):
        aftercare.appeal_removal(removal, note=note)


def test_only_a_rejection_can_be_appealed():
    removal = in_review(["match_strong"])
    with pytest.raises(TransitionError, match="only a rejection"):
        aftercare.appeal_removal(removal, note="Why?")


# --- Reversing an approval ----------------------------------------------------------------


def test_reversing_a_published_case_releases_its_holds_and_the_next_release_carries_tombstones(feed_files, publish):  # noqa: F811 (fixtures imported above)
    removal = in_review(["match_strong", "match_weak"])
    services.approve_removal(removal, reviewer=reviewer())
    publish()
    removal.refresh_from_db()
    assert removal.state == "published"
    events_before = RequestEvent.objects.filter(removal=removal).count()

    aftercare.reverse_removal(removal, reviewer=publisher(), reason="Blocked by mistake: a public artwork.")

    removal.refresh_from_db()
    assert removal.state == "reversed"
    assert not removal.items.filter(blocked=True).exists()
    assert not BlocklistHold.objects.exists()
    release = publish()
    # The partner tier names exactly the lifted keys (the public tier lifts their decoys with them).
    removed = {line["key"] for line in lines(feed_files, "partner", releases.delta_name(release.version))}
    assert removed == set(removal.items.values_list("url_sha256", flat=True))
    public = {line["key"] for line in lines(feed_files, "public", releases.delta_name(release.version))}
    assert removed <= public
    assert RequestEvent.objects.filter(removal=removal).count() == events_before + 1
    event = RequestEvent.objects.filter(removal=removal).latest("id")
    assert (event.to_state, event.actor_label, event.reason) == (
        "reversed",
        "pia",
        "Blocked by mistake: a public artwork.",
    )


def test_reversing_one_item_keeps_the_others_blocked(feed_files, publish):  # noqa: F811 (fixtures imported above)
    removal = in_review(["match_strong", "match_strong"])
    services.approve_removal(removal, reviewer=reviewer())
    publish()
    mistaken, kept = removal.items.order_by("id")

    aftercare.reverse_item(mistaken, reviewer=publisher(), reason="Not the requester's picture.")

    removal.refresh_from_db()
    assert removal.state == "published"
    assert list(removal.items.filter(blocked=True)) == [kept]
    release = publish()
    delta = lines(feed_files, "partner", releases.delta_name(release.version))
    assert [(line["key"], line["op"]) for line in delta] == [(mistaken.url_sha256, "remove")]
    event = RequestEvent.objects.filter(removal=removal, action="item_reversal").get()
    assert event.reason == f"item {mistaken.pk}: Not the requester's picture."


def test_reversing_the_last_blocked_item_reverses_the_case():
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer())
    aftercare.reverse_item(removal.items.get(), reviewer=publisher(), reason="Mistake.")
    assert RemovalRequest.objects.get(pk=removal.pk).state == "reversed"
    assert not BlocklistEntry.objects.filter(blocked=True).exists()


def test_reversal_needs_the_publish_permission_and_a_reason():
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer("rita"))
    with pytest.raises(PermissionDenied):
        aftercare.reverse_removal(removal, reviewer=reviewer("otto"), reason="Mistake.")
    with pytest.raises(TransitionError, match="Say why"):
        aftercare.reverse_removal(removal, reviewer=publisher(), reason=" ")
    with pytest.raises(PermissionDenied):
        aftercare.reverse_item(removal.items.get(), reviewer=reviewer("ulla"), reason="Mistake.")
    assert RemovalRequest.objects.get(pk=removal.pk).state == "approved"
    assert BlocklistHold.objects.count() == 1


def test_a_rejected_case_cannot_be_reversed():
    removal = rejected()
    with pytest.raises(TransitionError):
        aftercare.reverse_removal(removal, reviewer=publisher(), reason="Mistake.")


def test_a_reversed_item_stays_unblocked_when_the_case_is_approved_again():
    removal = in_review(["match_strong", "match_strong"])
    services.approve_removal(removal, reviewer=reviewer())
    first, _second = removal.items.order_by("id")
    aftercare.reverse_item(first, reviewer=publisher(), reason="Mistake.")
    aftercare.add_links(removal, urls=["https://images.example.org/new.jpg"])
    removal.refresh_from_db()
    RemovalItem.objects.filter(removal=removal, state="pending").update(state="match_strong")
    services.transition(removal, "in_review", actor=services.Actor("test"))

    services.approve_removal(removal, reviewer=reviewer("otto"))

    first.refresh_from_db()
    assert not first.blocked
    assert removal.items.filter(blocked=True).count() == 2


# --- Adding links -------------------------------------------------------------------------


def test_links_added_to_a_published_case_reopen_it(feed_files, publish, django_capture_on_commit_callbacks):  # noqa: F811 (fixtures imported above)
    removal = in_review(["match_strong", "no_match"])
    services.approve_removal(removal, reviewer=reviewer())
    publish()
    removal.refresh_from_db()
    unmatched = removal.items.get(state="no_match")

    with django_capture_on_commit_callbacks() as callbacks:
        added = aftercare.add_links(removal, urls=["https://images.example.org/again.jpg", removal.items.first().url])

    assert added == 1
    assert len(callbacks) == 1  # the verification task
    removal.refresh_from_db()
    assert removal.state == "checking"
    assert removal.reopened_at is not None
    new = removal.items.get(added_at__isnull=False)
    assert (new.state, new.decided_at, new.found_by_system) == ("pending", None, False)
    # Verification found a match; a reviewer approves: only the new item is added, the old no-match stays.
    RemovalItem.objects.filter(pk=new.pk).update(state="match_strong")
    RemovalItem.objects.filter(pk=unmatched.pk).update(decision="approve")  # a stale call on a settled item
    services.transition(removal, "in_review", actor=services.Actor("test"))
    services.approve_removal(removal, reviewer=reviewer("otto"))
    assert set(removal.items.filter(blocked=True).values_list("pk", flat=True)) == {
        removal.items.get(state="match_strong", added_at=None).pk,
        new.pk,
    }


def test_a_settled_item_cannot_be_decided_again():
    removal = in_review(["match_strong", "no_match"])
    services.approve_removal(removal, reviewer=reviewer())
    aftercare.add_links(removal, urls=["https://images.example.org/again.jpg"])
    removal.refresh_from_db()
    services.transition(removal, "in_review", actor=services.Actor("test"))
    settled = removal.items.get(state="no_match")
    with pytest.raises(TransitionError, match="decision stays"):
        services.decide_item(settled, reviewer=reviewer("otto"), decision="approve")


def test_links_cannot_be_added_to_a_withdrawn_or_appealed_case():
    removal, _ = submit()
    services.withdraw_removal(removal)
    with pytest.raises(TransitionError, match="cannot be added"):
        aftercare.add_links(removal, urls=["https://images.example.org/b.jpg"])
    appealed = rejected()
    aftercare.appeal_removal(appealed, note="Look again.")
    with pytest.raises(TransitionError, match="cannot be added"):
        aftercare.add_links(appealed, urls=["https://images.example.org/b.jpg"])


def test_adding_only_known_links_is_refused():
    removal, _ = submit(urls=["https://images.example.org/a.jpg"])
    with pytest.raises(TransitionError, match="part of your case already"):
        aftercare.add_links(removal, urls=["https://IMAGES.example.org/a.jpg"])


def test_a_case_holds_a_bounded_number_of_links(monkeypatch):
    monkeypatch.setattr(aftercare, "MAX_LINKS_PER_CASE", 3)
    removal, _ = submit(urls=["https://images.example.org/a.jpg", "https://images.example.org/b.jpg"])
    with pytest.raises(TransitionError, match="at most 3 links"):
        aftercare.add_links(removal, urls=["https://images.example.org/c.jpg", "https://images.example.org/d.jpg"])
    assert aftercare.add_links(removal, urls=["https://images.example.org/c.jpg"]) == 1
    assert removal.items.count() == 3


def test_a_case_without_its_fingerprints_needs_the_picture_again():
    removal, _ = submit()
    removal.references.all().delete()
    with pytest.raises(TransitionError, match="add your picture again"):
        aftercare.add_links(removal, urls=["https://images.example.org/b.jpg"])
    assert aftercare.add_links(removal, urls=["https://images.example.org/b.jpg"], references=[[reference(7)]]) == 1
    assert list(removal.references.values_list("image_index", flat=True)) == [0]


def test_reference_pictures_stay_within_the_intake_cap():
    removal, _ = submit(references=[[reference(n)] for n in range(5)])
    with pytest.raises(TransitionError, match="at most 5 reference pictures"):
        aftercare.add_links(removal, urls=["https://images.example.org/b.jpg"], references=[[reference(9)]])
