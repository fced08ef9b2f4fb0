"""The reviewers' admin: changelist, review page, acts through the services, previews, groups."""

import importlib
import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import connection
from django.utils import timezone
from PIL import Image

from optout.models import Dataset
from requests_app.models import ItemDecision, RemovalItem, RemovalRequest, RemovalState, RequestEvent
from tests.images import photo_jpeg
from tests.requests_app.builders import force_state, in_review, reviewer, submit
from tests.users import staff

STRONG, WEAK, NONE, UNREACHABLE, REFUSED = "match_strong", "match_weak", "no_match", "unreachable", "refused"
CHANGELIST = "/admin/requests_app/removalrequest/"

groups_migration = importlib.import_module("requests_app.migrations.0003_reviewer_groups")


def review_url(removal) -> str:
    return f"{CHANGELIST}{removal.pk}/review/"


def preview_url(item) -> str:
    return f"{CHANGELIST}{item.removal_id}/items/{item.pk}/preview.jpg"


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def groups(db):
    """The groups as the data migration makes them (a transactional test elsewhere may have flushed them)."""
    groups_migration.create_groups(global_apps, SimpleNamespace(connection=connection))
    return {group.name: group for group in Group.objects.all()}


@pytest.fixture
def reviewer_client(client, groups):
    """A staff member of the "reviewer" group, and nothing else."""
    user = staff("rhea", groups=(groups["reviewer"],))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def viewer_client(client, groups):
    """A staff member who may look at requests but not decide them (the "publisher" group)."""
    user = staff("vic", groups=(groups["publisher"],))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def admin_client_(client, db):
    user = User.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(user)
    return client


# --- Groups -------------------------------------------------------------------------


def permissions_of(group: Group) -> set[str]:
    return {
        f"{app}.{codename}" for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


@pytest.mark.django_db
def test_the_migration_creates_the_groups_idempotently():
    Group.objects.filter(name__in=["reviewer", "publisher"]).delete()
    for _ in range(2):
        groups_migration.create_groups(global_apps, SimpleNamespace(connection=connection))
    reviewer_group = Group.objects.get(name="reviewer")
    publisher_group = Group.objects.get(name="publisher")
    views = {
        "requests_app.view_removalrequest",
        "requests_app.view_removalitem",
        "requests_app.view_referencesignal",
        "requests_app.view_requestevent",
    }
    assert permissions_of(reviewer_group) == views | {"requests_app.review_removalrequest"}
    publisher = permissions_of(publisher_group)
    assert views <= publisher
    assert "requests_app.review_removalrequest" not in publisher
    assert "optout.publish_blocklist" in publisher
    assert "optout.publish_blocklist" not in permissions_of(reviewer_group)
    assert not any(codename.split(".")[1].startswith(("add_", "change_", "delete_")) for codename in publisher)
    assert Group.objects.filter(name__in=["reviewer", "publisher"]).count() == 2


@pytest.mark.django_db
def test_the_migrated_groups_decide_what_members_may_do(groups):
    rhea = staff("rhea2", groups=(groups["reviewer"],))
    vic = staff("vic2", groups=(groups["publisher"],))
    assert rhea.has_perm("requests_app.review_removalrequest")
    assert not vic.has_perm("requests_app.review_removalrequest")
    assert vic.has_perm("requests_app.view_removalrequest")


# --- The changelist -----------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_shows_requests_filters_and_counts_per_state(reviewer_client):
    dataset = Dataset.objects.create(name="laion-test", release="1")
    strong = in_review([STRONG, NONE], dataset=dataset)
    in_review([WEAK])
    in_review([NONE])
    received, _ = submit()
    response = reviewer_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for case in RemovalRequest.objects.values_list("case", flat=True):
        assert case in html
    for title in ("evidence strength", "age", "assigned reviewer", "state", "dataset"):
        assert f"By {title}" in html
    counts = {entry["label"]: entry["count"] for entry in response.context["state_counts"]}
    assert counts["in review"] == 3
    assert counts["received"] == 1
    assert counts["approved"] == 0
    assert 'class="review-counts"' in html
    # The case links to the review page; there is no "add" button.
    assert f'href="{review_url(strong)}"' in html
    assert f"{CHANGELIST}add/" not in html
    assert received.case in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("evidence", "expected"), [("strong", ["strong"]), ("weak", ["weak"]), ("none", ["none", "fresh"])]
)
def test_evidence_filter_uses_the_strongest_item(reviewer_client, evidence, expected):
    made = {
        "strong": in_review([WEAK, STRONG]),
        "weak": in_review([WEAK, NONE]),
        "none": in_review([NONE, UNREACHABLE]),
        "fresh": submit()[0],
    }
    response = reviewer_client.get(CHANGELIST, {"evidence": evidence})
    shown = {removal.case for removal in response.context["cl"].result_list}
    assert shown == {made[name].case for name in expected}


@pytest.mark.django_db
def test_age_and_assigned_filters(reviewer_client):
    new = in_review([STRONG])
    old = in_review([STRONG])
    RemovalRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    other = reviewer("otto")
    RemovalRequest.objects.filter(pk=new.pk).update(assigned_to=reviewer_client.user)
    mid = in_review([WEAK])
    RemovalRequest.objects.filter(pk=mid.pk).update(created_at=timezone.now() - timedelta(days=3), assigned_to=other)

    def shown(**params):
        return {r.case for r in reviewer_client.get(CHANGELIST, params).context["cl"].result_list}

    assert shown(age="1d") == {new.case}
    assert shown(age="7d") == {mid.case}
    assert shown(age="old") == {old.case}
    assert shown(assigned="me") == {new.case}
    assert shown(assigned="nobody") == {old.case}
    assert shown(assigned=str(other.pk)) == {mid.case}
    assert ">otto<" in reviewer_client.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_search_finds_a_case_however_its_reference_is_typed(reviewer_client):
    wanted = in_review([STRONG])
    in_review([STRONG])
    typed = wanted.case.lower().replace("-", " ")
    response = reviewer_client.get(CHANGELIST, {"q": typed})
    assert [r.case for r in response.context["cl"].result_list] == [wanted.case]


@pytest.mark.django_db
def test_changelist_query_count_does_not_grow_with_the_page(reviewer_client, django_assert_max_num_queries):
    dataset = Dataset.objects.create(name="laion-test", release="1")
    otto = reviewer("otto")
    for n in range(30):
        removal = in_review([STRONG, WEAK, NONE] if n % 2 else [NONE])
        RemovalRequest.objects.filter(pk=removal.pk).update(dataset=dataset, assigned_to=otto if n % 3 else None)
    with django_assert_max_num_queries(12):
        response = reviewer_client.get(CHANGELIST)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
    with django_assert_max_num_queries(12):
        reviewer_client.get(CHANGELIST, {"evidence": "strong", "assigned": "nobody", "age": "1d"})


@pytest.mark.django_db
def test_claim_action_assigns_and_reports_refusals(reviewer_client):
    ready = in_review([STRONG])
    fresh, _ = submit()
    response = reviewer_client.post(
        CHANGELIST, {"action": "claim", "_selected_action": [ready.pk, fresh.pk]}, follow=True
    )
    assert RemovalRequest.objects.get(pk=ready.pk).assigned_to == reviewer_client.user
    assert RemovalRequest.objects.get(pk=fresh.pk).assigned_to is None
    texts = [str(m) for m in response.context["messages"]]
    assert any("only requests in review can be claimed" in t for t in texts)
    assert any("reviewer of 1 request" in t for t in texts)


# --- Read-only everywhere else ------------------------------------------------------


@pytest.mark.django_db
def test_state_cannot_be_changed_in_the_change_form(admin_client_):
    removal = in_review([STRONG])
    change = f"{CHANGELIST}{removal.pk}/change/"
    page = admin_client_.get(change)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="state"' not in html
    assert "in review" in html
    assert "secret_hmac" not in html and removal.secret_hmac not in html
    response = admin_client_.post(change, {"state": "approved", "case": removal.case})
    assert response.status_code == 403
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW
    assert admin_client_.post(f"{CHANGELIST}add/", {"case": "OPT-X", "state": "approved"}).status_code == 403


@pytest.mark.django_db
def test_requests_and_events_cannot_be_deleted(admin_client_):
    removal = in_review([STRONG])
    event = RequestEvent.objects.filter(removal=removal).first()
    assert admin_client_.get(f"/admin/requests_app/requestevent/{event.pk}/delete/").status_code == 403
    assert (
        admin_client_.post(f"/admin/requests_app/requestevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert admin_client_.post(f"{CHANGELIST}{removal.pk}/delete/", {"post": "yes"}).status_code == 403
    events = admin_client_.get("/admin/requests_app/requestevent/")
    assert events.status_code == 200
    assert "delete_selected" not in events.content.decode()
    # The bulk delete action does not exist: posting it anyway deletes nothing.
    admin_client_.post(
        "/admin/requests_app/requestevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    admin_client_.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [removal.pk], "post": "yes"})
    assert RequestEvent.objects.filter(pk=event.pk).exists()
    assert RemovalRequest.objects.filter(pk=removal.pk).exists()


# --- The review page ----------------------------------------------------------------


@pytest.mark.django_db
def test_review_page_shows_items_distances_and_history(reviewer_client):
    removal = in_review([STRONG, NONE, REFUSED])
    strong, none, refused = removal.items.order_by("id")
    RemovalItem.objects.filter(pk=strong.pk).update(phash_distance=3, pdq_distance=17, sha256_equal=False)
    RemovalItem.objects.filter(pk=none.pk).update(phash_distance=29, found_by_system=True)
    RemovalItem.objects.filter(pk=refused.pk).update(detail="This address points to a private network.")
    response = reviewer_client.get(review_url(removal))
    assert response.status_code == 200
    html = response.content.decode()
    assert removal.case in html
    assert "strong match" in html and "no match" in html and "refused (blocked address)" in html
    assert "3 of 64 bits" in html and "17 of 256 bits" in html and "29 of 64 bits" in html
    assert "found in the index by the reference hashes" in html and "given by the requester" in html
    assert strong.url in html  # reviewers see the links
    assert "never kept" in html
    # No preview of a refused address; the no-match item shows the strong match beside it.
    assert html.count('class="review-blurred"') == 3
    assert "Shown beside item 1, the strong match of this case" in html
    assert f'src="{preview_url(strong)}"' in html
    assert "private network" in html
    # The history: the requester filed it.
    assert "requester" in html and "received" in html
    # One form per act, each with its CSRF token; item decisions belong to the approve form.
    for act in ("claim", "approve", "reject"):
        assert f'name="action" value="{act}"' in html
    assert 'value="decide"' not in html and ">Save<" not in html
    assert html.count("csrfmiddlewaretoken") == html.count('method="post"') == 3 + 1  # and the logout form
    assert html.count('form="approve-form"') == 3
    # Evidence in words beside the bits.
    assert "The same picture, edited a little (cropped, filtered or re-framed)." in html
    assert "Probably a different picture." in html


@pytest.mark.django_db
def test_approve_on_the_page_moves_the_request_and_logs_it(reviewer_client):
    removal = in_review([STRONG, WEAK, NONE])
    response = reviewer_client.post(review_url(removal), {"action": "approve", "note": "clear match"})
    assert response.status_code == 302
    assert response["Location"] == review_url(removal)
    removal.refresh_from_db()
    assert removal.state == RemovalState.APPROVED
    assert removal.assigned_to == reviewer_client.user
    assert list(removal.items.filter(blocked=True).values_list("state", flat=True).order_by("id")) == [STRONG, WEAK]
    event = RequestEvent.objects.filter(removal=removal).last()
    assert (event.from_state, event.to_state, event.actor_label, event.reason) == (
        "in_review",
        "approved",
        "rhea",
        "clear match",
    )
    assert any("approved" in t for t in message_texts(response))
    page = reviewer_client.get(review_url(removal)).content.decode()
    assert 'value="approve"' not in page  # nothing left to decide
    assert "clear match" in page


@pytest.mark.django_db
def test_reject_needs_a_reason(reviewer_client):
    removal = in_review([NONE])
    response = reviewer_client.post(review_url(removal), {"action": "reject", "reason": "", "note": ""})
    assert response.status_code == 302
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW
    assert "Choose a reason for the rejection." in message_texts(response)
    other = reviewer_client.post(review_url(removal), {"action": "reject", "reason": "other", "note": " "})
    assert any("note" in t for t in message_texts(other))
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW
    reviewer_client.post(review_url(removal), {"action": "reject", "reason": "no_match", "note": "different people"})
    removal.refresh_from_db()
    assert (removal.state, removal.decision_reason) == (RemovalState.REJECTED, "no_match")
    assert RequestEvent.objects.filter(removal=removal, to_state="rejected", reason__contains="do not match").exists()


@pytest.mark.django_db
def test_a_refused_transition_comes_back_as_a_message(reviewer_client):
    removal = in_review([NONE, UNREACHABLE])
    response = reviewer_client.post(review_url(removal), {"action": "approve"})
    assert any("no matching item to block" in t for t in message_texts(response))
    force_state(removal, "rejected")
    late = reviewer_client.post(review_url(removal), {"action": "approve"})
    assert any("cannot become approved" in t for t in message_texts(late))
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.REJECTED


@pytest.mark.django_db
def test_item_decisions_are_sent_with_the_approval_and_deciding_claims_the_case(reviewer_client):
    removal = in_review([STRONG, NONE, WEAK])
    strong, none, weak = removal.items.order_by("id")
    response = reviewer_client.post(
        review_url(removal),
        {"action": "approve", f"item_{none.pk}": "approve", f"item_{weak.pk}": "reject", f"item_{strong.pk}": ""},
    )
    removal.refresh_from_db()
    assert removal.state == RemovalState.APPROVED
    assert removal.assigned_to == reviewer_client.user
    assert set(removal.items.filter(blocked=True).values_list("pk", flat=True)) == {strong.pk, none.pk}
    assert RemovalItem.objects.get(pk=none.pk).decision == ItemDecision.APPROVE
    assert RemovalItem.objects.get(pk=weak.pk).decision == ItemDecision.REJECT
    events = list(RequestEvent.objects.filter(removal=removal).order_by("id").values_list("action", "reason"))
    claim = [reason for action, reason in events if action == "claim"]
    assert claim == ["assigned to rhea, automatically on deciding"]
    assert [action for action, _ in events][-4:] == ["claim", "item_decision", "item_decision", "transition"]
    assert any("2 item(s) go on the blocklist" in t for t in message_texts(response))


@pytest.mark.django_db
def test_a_refused_approval_keeps_no_item_decision_nor_claim(reviewer_client):
    removal = in_review([NONE, UNREACHABLE])
    none, unreachable = removal.items.order_by("id")
    response = reviewer_client.post(review_url(removal), {"action": "approve", f"item_{none.pk}": "reject"})
    assert any("no matching item to block" in t for t in message_texts(response))
    assert RemovalItem.objects.get(pk=none.pk).decision == ""
    assert RemovalRequest.objects.get(pk=removal.pk).assigned_to is None
    assert not RequestEvent.objects.filter(removal=removal, action__in=["claim", "item_decision"]).exists()


@pytest.mark.django_db
def test_claiming_by_hand_is_still_one_click(reviewer_client):
    removal = in_review([STRONG])
    reviewer_client.post(review_url(removal), {"action": "claim"})
    assert RemovalRequest.objects.get(pk=removal.pk).assigned_to == reviewer_client.user
    reviewer_client.post(review_url(removal), {"action": "approve"})
    reasons = list(RequestEvent.objects.filter(removal=removal, action="claim").values_list("reason", flat=True))
    assert reasons == ["assigned to rhea"]  # no second, automatic claim


@pytest.mark.django_db
def test_staff_without_the_review_permission_can_look_but_not_decide(viewer_client):
    removal = in_review([STRONG])
    item = removal.items.get()
    page = viewer_client.get(review_url(removal))
    assert page.status_code == 200
    html = page.content.decode()
    assert "needs the reviewer permission" in html
    assert item.url not in html
    assert "review-blurred" not in html and 'value="approve"' not in html
    events = RequestEvent.objects.filter(removal=removal).count()
    for data in (
        {"action": "approve"},
        {"action": "reject", "reason": "no_match"},
        {"action": "claim"},
        {"action": "approve", f"item_{item.pk}": "reject"},
    ):
        assert viewer_client.post(review_url(removal), data).status_code == 403
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW
    assert RequestEvent.objects.filter(removal=removal).count() == events
    assert viewer_client.get(preview_url(item)).status_code == 403
    # The changelist's claim action is not offered either.
    assert 'value="claim"' not in viewer_client.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_staff_without_any_permission_cannot_see_the_review_page(client):
    removal = in_review([STRONG])
    user = staff("nora")
    client.force_login(user)
    assert client.get(review_url(removal)).status_code == 403
    assert client.get(preview_url(removal.items.get())).status_code == 403
    client.logout()
    anonymous = client.get(review_url(removal))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


# --- The preview --------------------------------------------------------------------


@pytest.mark.django_db
def test_preview_is_fetched_by_the_server_shrunk_and_never_cached(reviewer_client, image_server, fetch_connections):
    image_server.add("/photo.jpg", photo_jpeg(size=(1600, 1200), exif_orientation=6), content_type="image/jpeg")
    removal = in_review([STRONG])
    item = removal.items.get()
    RemovalItem.objects.filter(pk=item.pk).update(url=image_server.url("/photo.jpg"))
    response = reviewer_client.get(preview_url(item))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    # Stored turned (1200x1600) with an EXIF tag: the preview is upright, at most 512 pixels a side.
    assert image.size == (512, 384)
    assert not image.getexif()
    assert image_server.hits["/photo.jpg"] == 1
    assert fetch_connections and all(address.is_loopback for address, _port in fetch_connections)
    page = reviewer_client.get(review_url(removal)).content.decode()
    assert 'class="review-reveal"' in page and 'class="review-blurred"' in page


@pytest.mark.django_db
def test_preview_of_something_that_is_not_an_image_is_refused(reviewer_client, image_server):
    image_server.add("/page.jpg", b"<html>hello</html>", content_type="image/jpeg")
    removal = in_review([STRONG])
    item = removal.items.get()
    RemovalItem.objects.filter(pk=item.pk).update(url=image_server.url("/page.jpg"))
    response = reviewer_client.get(preview_url(item))
    assert response.status_code == 502
    assert response["Content-Type"].startswith("text/plain")
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_preview_never_fetches_a_private_address(reviewer_client, fetch_connections, settings):
    settings.OPTOUT_FETCH_ALLOW_LOOPBACK = False
    removal = in_review([STRONG])
    item = removal.items.get()
    RemovalItem.objects.filter(pk=item.pk).update(url="http://127.0.0.1/secret.jpg")
    response = reviewer_client.get(preview_url(item))
    assert response.status_code == 502
    assert fetch_connections == []


@pytest.mark.django_db
def test_preview_of_an_item_of_another_request_is_not_found(reviewer_client):
    one = in_review([STRONG])
    other_item = in_review([STRONG]).items.get()
    assert reviewer_client.get(f"{CHANGELIST}{one.pk}/items/{other_item.pk}/preview.jpg").status_code == 404


@pytest.mark.django_db
def test_the_review_permission_alone_is_enough_to_see_and_decide(client):
    removal = in_review([STRONG])
    client.force_login(reviewer("rita"))  # only requests_app.review_removalrequest
    assert client.get(CHANGELIST).status_code == 200
    assert client.get(review_url(removal)).status_code == 200
    client.post(review_url(removal), {"action": "approve"})
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.APPROVED
