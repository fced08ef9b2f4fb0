import pytest
from django.db import DatabaseError, connection, transaction

from requests_app import cases, services
from requests_app.exceptions import TransitionError
from requests_app.models import ItemState, RemovalRequest, RemovalState, RequestEvent
from tests.requests_app.builders import reference, submit


@pytest.mark.django_db
def test_submit_keeps_only_an_hmac_of_the_secret():
    removal, secret = submit()
    assert len(secret) >= 32
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert secret not in stored.secret_hmac
    assert len(stored.secret_hmac) == 64
    assert removal.case.startswith("OPT-")
    assert stored.state == RemovalState.RECEIVED


@pytest.mark.django_db
def test_the_secret_hmac_depends_on_the_secret_and_on_the_key(settings):
    digest = cases.secret_hmac("one secret")
    assert digest != cases.secret_hmac("another secret")
    assert cases.secret_matches("one secret", digest)
    assert not cases.secret_matches("another secret", digest)
    settings.SECRET_KEY = "a-new-key-" + "k" * 50
    assert cases.secret_hmac("one secret") != digest
    assert not cases.secret_matches("one secret", digest)


@pytest.mark.django_db
def test_a_case_is_found_after_a_key_rotation_while_the_old_key_is_a_fallback(settings):
    removal, secret = submit()
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-key-" + "k" * 50
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert services.find_case(removal.case, secret) == removal
    settings.SECRET_KEY_FALLBACKS = []
    assert services.find_case(removal.case, secret) is None


@pytest.mark.django_db
def test_secrets_stored_before_salted_hmac_still_match(settings):
    import hashlib
    import hmac

    removal, secret = submit()
    key = hashlib.sha256(b"requests_app.case-secret" + settings.SECRET_KEY.encode()).digest()
    RemovalRequest.objects.filter(pk=removal.pk).update(
        secret_hmac=hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
    )
    assert services.find_case(removal.case, secret) == removal


@pytest.mark.django_db
def test_submit_merges_urls_that_canonicalise_alike():
    removal, _ = submit(urls=["http://Example.ORG/a.jpg", "http://example.org/a.jpg#x", "http://example.org/b.jpg"])
    assert removal.items.count() == 2
    assert set(removal.items.values_list("state", flat=True)) == {ItemState.PENDING}


@pytest.mark.django_db
def test_submit_records_the_first_event_and_the_reference_signals():
    removal, _ = submit(references=[[reference(0xFFFF_0000_FFFF_0000, pdq=(1 << 255) | 7)], [reference(5)]])
    event = RequestEvent.objects.get(removal=removal)
    assert (event.from_state, event.to_state, event.actor_label) == ("", "received", "requester")
    refs = list(removal.references.values_list("image_index", "phash", "pdq"))
    assert refs[0] == (0, "ffff0000ffff0000", "8" + "0" * 62 + "7")
    assert refs[1][:2] == (1, "0000000000000005")


@pytest.mark.django_db
def test_verification_is_scheduled_only_on_commit(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("requests_app.tasks.verify_removal.delay", sent.append)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        removal, _ = services.submit_removal(urls=["https://example.org/x.png"], references=[[reference()]])
    assert sent == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [removal.pk]


@pytest.mark.django_db
def test_a_broker_outage_does_not_lose_the_request(django_capture_on_commit_callbacks, monkeypatch):
    def broker_down(*args):
        raise ConnectionRefusedError("broker unreachable")

    monkeypatch.setattr("requests_app.tasks.verify_removal.delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        removal, _ = services.submit_removal(urls=["https://example.org/x.png"], references=[[reference()]])
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.RECEIVED


@pytest.mark.django_db
def test_a_wrong_secret_and_an_unknown_case_look_the_same():
    removal, secret = submit()
    assert services.find_case(removal.case, secret) == removal
    assert services.find_case(removal.case.lower().replace("-", " "), secret) == removal
    assert services.find_case(removal.case, secret + "x") is None
    assert services.find_case("OPT-0000-0000-0000", secret) is None
    assert services.find_case("", "") is None


@pytest.mark.django_db
def test_withdrawal_deletes_the_contact_email_and_is_recorded():
    removal, _ = submit(contact_email="me@example.org")
    services.withdraw_removal(removal)
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert stored.state == RemovalState.WITHDRAWN
    assert stored.contact_email == ""
    assert RequestEvent.objects.filter(removal=removal, to_state="withdrawn", actor_label="requester").count() == 1
    with pytest.raises(TransitionError):
        services.withdraw_removal(stored)


@pytest.mark.django_db
def test_events_cannot_be_edited_or_deleted_through_the_model():
    removal, _ = submit()
    event = RequestEvent.objects.get(removal=removal)
    event.reason = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_refuses_to_change_an_event_even_with_raw_updates():
    removal, _ = submit()
    assert connection.vendor == "postgresql"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        RequestEvent.objects.filter(removal=removal).update(reason="rewritten")
