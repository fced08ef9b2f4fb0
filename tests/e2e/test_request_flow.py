"""A person files a removal request in a real browser; a real worker verifies it."""

import pytest

from requests_app.models import RemovalRequest
from tests import images
from tests.e2e.browser import axe_violations, chromium_page
from tests.e2e.conftest import wait_for


@pytest.mark.browser
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_request_filed_in_a_browser_reaches_review(live_server, celery_worker_process, image_server, tmp_path):
    image_server.add(
        "/holiday.jpg", images.photo_jpeg("astronaut", size=(640, 480), quality=80), content_type="image/jpeg"
    )
    my_copy = tmp_path / "my-copy.jpg"
    my_copy.write_bytes(images.photo_jpeg("astronaut", size=(1024, 768)))

    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        assert axe_violations(page) == []
        page.get_by_label("Links to the picture").fill(image_server.url("/holiday.jpg"))
        page.get_by_label("Your copy of the picture").set_input_files(str(my_copy))
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#secret")
        assert axe_violations(page) == []
        case = page.locator("#case").inner_text().strip()
        secret = page.locator("#secret").inner_text().strip()
        assert case.startswith("OPT-") and len(secret) >= 30

        wait_for(
            lambda: RemovalRequest.objects.filter(case=case, state="in_review").exists(),
            timeout=90,
            message=lambda: "the worker to verify the request\n" + celery_worker_process.log(),
        )

        page.goto(f"{live_server.url}/requests/status/")
        assert axe_violations(page) == []
        page.get_by_label("Case reference").fill(case)
        page.get_by_label("Secret").fill(secret)
        page.get_by_role("button", name="Show the request").click()
        page.wait_for_selector("#state")
        assert page.locator("#state").get_attribute("data-state") == "in_review"
        assert "Waiting for a reviewer" in page.locator("#state").inner_text()
        assert "matches yours" in page.content()
        assert axe_violations(page) == []

    removal = RemovalRequest.objects.get(case=case)
    item = removal.items.get(found_by_system=False)
    assert item.state == "match_strong"
    assert image_server.hits["/holiday.jpg"] == 1
