import itertools

import pytest

from optout.blocklist import holds
from optout.models import BlocklistHold
from requests_app import aftercare, services
from requests_app.exceptions import TransitionError
from requests_app.models import ALLOWED_TRANSITIONS, ItemState, RemovalState, RequestEvent
from requests_app.services.review import holder_of
from tests.requests_app.builders import force_state, in_review, reviewer, submit
from tests.users import staff

PAIRS = list(itertools.product(RemovalState.values, RemovalState.values))


def test_the_map_names_every_state():
    assert set(ALLOWED_TRANSITIONS) == set(RemovalState.values)


def test_withdrawal_is_allowed_from_every_state_but_withdrawn():
    for state in RemovalState.values:
        assert (RemovalState.WITHDRAWN in ALLOWED_TRANSITIONS[state]) == (state != RemovalState.WITHDRAWN)


def _publish(removal):
    # The states are forced, so the holds an approval makes are made here: a release then carries them.
    for item in removal.items.filter(blocked=True):
        if not BlocklistHold.objects.filter(holder=holder_of(item)).exists():
            holds.hold(holder=holder_of(item), url_sha256=item.url_sha256)
    if not services.mark_published(release_version=1, newest_hold=holds.newest_hold()):
        raise TransitionError("not published")


def _reject(removal, rev):
    # A case with blocked links (re-opened after an approval) is not rejected as a whole: the setup's
    # block is lifted so that the map alone decides.
    removal.items.update(blocked=False)
    return services.reject_removal(removal, reviewer=rev, reason="no_match")


def _reverse(removal, rev):
    publisher = staff("pia", "review_removalrequest", "publish_blocklist")
    return aftercare.reverse_removal(removal, reviewer=publisher, reason="blocked by mistake")


# The public service that moves a case into each state, as its actor calls it.
ACTS = {
    RemovalState.CHECKING: lambda removal, rev: services.start_checking(removal),
    RemovalState.IN_REVIEW: lambda removal, rev: services.finish_checking(removal),
    RemovalState.APPROVED: lambda removal, rev: services.approve_removal(removal, reviewer=rev),
    RemovalState.REJECTED: _reject,
    RemovalState.PUBLISHED: lambda removal, rev: _publish(removal),
    RemovalState.APPEALED: lambda removal, rev: aftercare.appeal_removal(removal, note="Please look again."),
    RemovalState.REVERSED: _reverse,
    RemovalState.WITHDRAWN: lambda removal, rev: services.withdraw_removal(removal),
}


def test_no_transition_leads_back_to_received():
    assert not any(RemovalState.RECEIVED in targets for targets in ALLOWED_TRANSITIONS.values())
    assert set(ACTS) == set(RemovalState.values) - {RemovalState.RECEIVED}


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), [pair for pair in PAIRS if pair[1] != RemovalState.RECEIVED])
def test_every_pair_of_states_is_allowed_or_refused_by_the_public_services(source, target):
    # Items that match and are blocked, so that every act has what it needs when its state allows it.
    removal = in_review([ItemState.MATCH_STRONG])
    removal.items.update(blocked=True)
    force_state(removal, source)
    events_before = RequestEvent.objects.filter(removal=removal).count()
    act = ACTS[target]
    if target in ALLOWED_TRANSITIONS[source]:
        act(removal, reviewer())
        removal.refresh_from_db()
        assert removal.state == target
        event = RequestEvent.objects.filter(removal=removal, to_state=target).latest("id")
        assert event.from_state == source
    else:
        with pytest.raises(TransitionError):
            act(removal, reviewer())
        removal.refresh_from_db()
        assert removal.state == source
        assert RequestEvent.objects.filter(removal=removal).count() == events_before


@pytest.mark.django_db
def test_a_stale_copy_loses_the_compare_and_swap():
    removal, _ = submit()
    stale = type(removal).objects.get(pk=removal.pk)
    services.withdraw_removal(removal)
    with pytest.raises(TransitionError, match="changed by someone else"):
        services.start_checking(stale)
    assert RequestEvent.objects.filter(removal=removal).count() == 2
