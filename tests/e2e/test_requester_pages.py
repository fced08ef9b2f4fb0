"""The requester's pages in headless Chromium: accessibility, the one-time receipt, the device-side type check.

No worker is needed: these tests stop at the receipt and the status page. Each accessibility item of
the pages is asserted in the browser, and axe-core runs on every page in each state.
"""

import pytest

from optout.models import Dataset, DatasetRow
from requests_app import cases
from requests_app.models import RemovalRequest
from tests import images
from tests.e2e.browser import axe_violations, chromium_page
from tests.requests_app.builders import in_review

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
LINK = "https://images.example.org/private/holiday.jpg"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _fill(page, copy):
    page.get_by_label("Links to the picture").fill(LINK)
    page.get_by_label("Your copy of the picture").set_input_files(str(copy))
    page.wait_for_selector("#removal-form[data-hashing=done]", state="attached", timeout=60_000)
    page.get_by_label("I confirm").check()


def _described_by(page, selector) -> list[str]:
    """The text of every element the field's aria-describedby names (an id that names nothing fails)."""
    return page.evaluate(
        """(selector) => {
            const field = document.querySelector(selector);
            return (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean).map((id) => {
                const element = document.getElementById(id);
                if (!element) throw new Error(`aria-describedby names a missing id: ${id}`);
                return element.textContent.trim();
            });
        }""",
        selector,
    )


def test_the_form_ties_help_and_errors_to_their_fields_and_focuses_the_summary(live_server):
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        assert axe_violations(page) == []
        assert "The web address (URL)" in _described_by(page, "#id_urls")[0]
        assert "JPEG, PNG, WebP or GIF" in _described_by(page, "#id_images")[0]
        assert page.locator("#id_urls").get_attribute("aria-invalid") is None

        page.get_by_label("Links to the picture").fill("http://169.254.169.254/latest/meta-data/")
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#error-summary")
        # Focus moves to the summary, which names every problem.
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.locator("#id_urls").get_attribute("aria-invalid") == "true"
        urls_said = _described_by(page, "#id_urls")
        assert any("only public web addresses" in text for text in urls_said)
        assert page.locator("#id_confirm").get_attribute("aria-invalid") == "true"
        assert any("confirm the statement" in text for text in _described_by(page, "#id_confirm"))
        # The confirmation's error sits with its checkbox, below it, not under the e-mail field.
        checkbox = page.locator("#id_confirm").bounding_box()
        error = page.locator("#id_confirm_error").bounding_box()
        email = page.locator("#id_contact_email").bounding_box()
        assert error["y"] >= checkbox["y"] + checkbox["height"] - 1
        assert error["y"] > email["y"] + email["height"] + checkbox["height"]
        # The typed link is kept to be corrected.
        assert page.locator("#id_urls").input_value() == "http://169.254.169.254/latest/meta-data/"
        assert axe_violations(page) == []


def test_tap_targets_are_at_least_24_pixels_and_nothing_overflows_a_phone(live_server):
    dataset = Dataset.objects.create(name="demo", release="2026", description="Demo.")
    for n in range(3):
        long_url = f"{live_server.url}/demo/images/astronaut-original.jpg?copy={'x' * 60}{n}"
        DatasetRow.objects.create(dataset=dataset, url=long_url, url_sha256=f"{n:064x}")
    with chromium_page(**PHONE) as page:
        for path in ("/requests/new/", "/requests/status/", "/demo/", "/transparency/", "/"):
            page.goto(f"{live_server.url}{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
            small = page.evaluate(
                """() => Array.from(document.querySelectorAll('main input[type=checkbox], main button, main a.button'))
                    .filter((e) => e.offsetParent !== null)
                    .map((e) => [e.id || e.textContent.trim(), e.getBoundingClientRect().width, e.getBoundingClientRect().height])
                    .filter(([, w, h]) => w < 24 || h < 24)"""
            )
            assert small == [], f"{path}: tap targets under 24 px: {small}"
            assert axe_violations(page) == [], path
        page.goto(f"{live_server.url}/requests/new/")
        box = page.locator("#id_confirm").bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24


def test_the_receipt_is_shown_once_with_a_secret_that_copies_and_never_breaks_inside_a_group(live_server, tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(images.photo_jpeg("astronaut", size=(640, 480)))
    with chromium_page(**PHONE, permissions=["clipboard-read", "clipboard-write"]) as page:
        page.goto(f"{live_server.url}/requests/new/")
        _fill(page, copy)
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#secret")
        assert page.url == f"{live_server.url}/requests/receipt/"
        assert axe_violations(page) == []
        secret = page.locator("#secret").get_attribute("data-value")
        assert len(secret.split("-")) == 8
        # On a phone the secret wraps only between its groups.
        assert page.evaluate(
            "Array.from(document.querySelectorAll('#secret .group')).every((g) => g.getClientRects().length === 1)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.get_by_role("button", name="Copy the secret").click()
        # A locator's wait, not wait_for_function: polling a string predicate is an eval, which the page's CSP
        # (script-src 'self') refuses whenever the answer is not there at the first look.
        page.locator("#copy-said", has_text="Secret copied.").wait_for()
        assert page.locator("#copy-said").inner_text() == "Secret copied."
        assert page.evaluate("navigator.clipboard.readText()") == secret
        # A reload files nothing and shows no secret.
        page.reload()
        assert "This receipt was already shown" in page.content()
        assert secret not in page.content()
        assert axe_violations(page) == []
    assert RemovalRequest.objects.count() == 1


def test_a_file_that_is_not_a_picture_is_refused_on_the_device_and_never_sent(live_server, tmp_path):
    document = tmp_path / "scan.pdf"
    document.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + b"private " * 200)
    posted: list[bytes] = []
    with chromium_page() as page:
        page.on("request", lambda request: request.method == "POST" and posted.append(request.post_data_buffer or b""))
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Links to the picture").fill(LINK)
        page.get_by_label("Your copy of the picture").set_input_files(str(document))
        page.wait_for_selector("#removal-form[data-type-check=refused]", state="attached")
        error = page.locator("#id_images_device_error")
        assert '"scan.pdf" is not a picture' in error.inner_text()
        assert "nothing was sent" in error.inner_text()
        assert "This browser could not read" not in page.content()
        assert page.evaluate("document.getElementById('id_images').files.length") == 0
        assert page.locator("#id_images").get_attribute("aria-invalid") == "true"
        assert any("is not a picture" in text for text in _described_by(page, "#id_images"))
        assert axe_violations(page) == []
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#error-summary")
    assert len(posted) == 1
    assert b"%PDF" not in posted[0] and b"private private" not in posted[0]
    assert RemovalRequest.objects.count() == 0


def test_the_status_page_reads_well_in_each_state(live_server):
    removal = in_review(["match_strong", "no_match"])
    secret = cases.new_secret()
    RemovalRequest.objects.filter(pk=removal.pk).update(secret_hmac=cases.secret_hmac(secret))
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/status/")
        page.get_by_label("Case reference").fill(removal.case.lower())
        page.get_by_label("Secret").fill(secret.replace("-", " "))
        page.get_by_role("button", name="Show the request").click()
        page.wait_for_selector("#state")
        assert page.locator("#state").get_attribute("data-state") == "in_review"
        rows = page.locator("table.links tbody tr")
        assert [rows.nth(n).get_attribute("data-outcome") for n in range(2)] == ["waiting", "waiting"]
        assert page.locator("#no-match-help").is_visible()
        assert axe_violations(page) == []
        # The withdrawal's checkbox error is tied to the box, and focus goes to the summary.
        page.get_by_role("button", name="Withdraw").click()
        page.wait_for_selector("#error-summary")
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert page.locator("#id_confirm").get_attribute("aria-invalid") == "true"
        assert axe_violations(page) == []
        page.get_by_label("Yes, withdraw this request.").check()
        page.get_by_role("button", name="Withdraw").click()
        page.wait_for_selector("#state[data-state=withdrawn]")
        assert page.locator("#state").inner_text().startswith("Withdrawn")
        assert axe_violations(page) == []


def test_the_transparency_page_passes_axe(live_server):
    with chromium_page() as page:
        page.goto(f"{live_server.url}/transparency/")
        assert page.get_by_role("heading", name="Transparency report").is_visible()
        assert axe_violations(page) == []
        body = page.evaluate("fetch('/transparency/?format=json').then((r) => r.json())")
        assert set(body) >= {"months", "totals", "median_hours_to_decision", "release"}
