import itertools

import pytest

from requests_app import services
from requests_app.exceptions import TransitionError
from requests_app.models import ALLOWED_TRANSITIONS, RemovalState, RequestEvent
from tests.requests_app.builders import force_state, submit

PAIRS = list(itertools.product(RemovalState.values, RemovalState.values))


def test_the_map_names_every_state():
    assert set(ALLOWED_TRANSITIONS) == set(RemovalState.values)


def test_withdrawal_is_allowed_from_every_state_but_withdrawn():
    for state in RemovalState.values:
        assert (RemovalState.WITHDRAWN in ALLOWED_TRANSITIONS[state]) == (state != RemovalState.WITHDRAWN)


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_every_pair_of_states_is_allowed_or_refused(source, target):
    removal, _ = submit()
    force_state(removal, source)
    events_before = RequestEvent.objects.filter(removal=removal).count()
    actor = services.Actor("test")
    if target in ALLOWED_TRANSITIONS[source]:
        services._transition(removal, target, actor=actor)
        removal.refresh_from_db()
        assert removal.state == target
        event = RequestEvent.objects.filter(removal=removal).latest("id")
        assert (event.from_state, event.to_state, event.actor_label) == (source, target, "test")
    else:
        with pytest.raises(TransitionError):
            services._transition(removal, target, actor=actor)
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
