"""The review page in Chromium: the approve button counts the items it will block as the decisions change."""

import pytest

from requests_app.models import RemovalItem, RemovalRequest
from tests.e2e.browser import axe_violations, chromium_page
from tests.requests_app.builders import in_review
from tests.users import PASSWORD, staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_approve_count_follows_the_item_decisions_and_one_click_sends_them(live_server):
    user = staff("rhea", "review_removalrequest")
    removal = in_review(["match_strong", "no_match", "match_weak", "match_strong"])
    strong, none, weak, found = removal.items.order_by("id")
    RemovalItem.objects.filter(pk=found.pk).update(found_by_system=True)  # blocked only when ticked
    with chromium_page(viewport={"width": 1280, "height": 900}) as page:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "rhea")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/requests_app/removalrequest/{removal.pk}/review/")
        button = page.locator("[data-approve-button]")
        assert button.inner_text() == "Approve and block 2 items"
        assert page.locator(".review-decide button").count() == 0  # no per-item Save
        page.select_option(f"#id_item_{none.pk}", "approve")
        assert button.inner_text() == "Approve and block 3 items"
        assert page.locator(f"#item-{none.pk} [data-outcome]").inner_text() == "will be blocked on approval"
        page.select_option(f"#id_item_{strong.pk}", "reject")
        page.select_option(f"#id_item_{weak.pk}", "reject")
        assert button.inner_text() == "Approve and block 1 item"
        page.select_option(f"#id_item_{none.pk}", "")
        assert button.is_disabled()
        page.select_option(f"#id_item_{weak.pk}", "")
        assert button.inner_text() == "Approve and block 1 item" and button.is_enabled()
        assert axe_violations(page) == []
        button.click()
        page.wait_for_selector(".review-next-case")
        assert axe_violations(page) == []
    removal = RemovalRequest.objects.get(pk=removal.pk)
    assert removal.state == "approved" and removal.assigned_to == user
    assert list(removal.items.filter(blocked=True).values_list("pk", flat=True)) == [weak.pk]
