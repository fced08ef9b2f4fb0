"""The picture never leaves the device: the form hashes it in the browser (static/js/signals.js).

The browser's signals must agree with the server's (optout.signals.compute_signals) on the same
file: pHash within 4 bits, PDQ within 10 bits, sha256 identical. A request filed this way sends
no file and is verified exactly like one filed with an upload; without JavaScript the upload
path still works.
"""

import hashlib
import json
from collections import Counter

import pytest
from django.conf import settings

from optout import signals
from optout.hashbits import hamming, pdq_from_hex, phash_from_hex
from requests_app.models import ReferenceSignal, RemovalRequest
from tests import images
from tests.e2e.browser import axe_violations, chromium_page
from tests.e2e.conftest import wait_for

PHASH_TOLERANCE = 4
PDQ_TOLERANCE = 10
SIZES = [(320, 240), (1024, 768), (3000, 2000)]


def _cases() -> list[tuple[str, str, bytes]]:
    """(label, file suffix, bytes): real photos in several sizes, formats and EXIF orientations."""
    cases = []
    for name, size in zip(("astronaut", "coffee", "chelsea"), SIZES, strict=True):
        dims = f"{size[0]}x{size[1]}"
        cases.append((f"{name} {dims} JPEG", ".jpg", images.photo_jpeg(name, size=size, quality=85)))
        cases.append((f"{name} {dims} PNG", ".png", images.photo_png(name, size=size)))
        cases.append((f"{name} {dims} WebP", ".webp", images.photo_webp(name, size=size)))
    for orientation, size in ((1, (1024, 768)), (3, (640, 480)), (6, (1024, 768)), (8, (3000, 2000))):
        data = images.photo_jpeg("rocket", size=size, exif_orientation=orientation)
        cases.append((f"rocket {size[0]}x{size[1]} JPEG EXIF {orientation}", ".jpg", data))
    # Reductions by 8 and by 4 with blocks left over at the edges, turned by the EXIF tag.
    cases.append(("retina 5000x4000 JPEG", ".jpg", images.photo_jpeg("retina", (5000, 4000), 85)))
    cases.append(("coffee 2050x1550 JPEG EXIF 3", ".jpg", images.photo_jpeg("coffee", (2050, 1550), 85, 3)))
    cases.append(("chelsea 1550x2050 PNG", ".png", images.photo_png("chelsea", (1550, 2050))))
    cases.append(
        ("motorcycle_left 1024x768 JPEG EXIF 6", ".jpg", images.photo_jpeg("motorcycle_left", (1024, 768), 80, 6))
    )
    cases.append(("astronaut 800x600 PNG RGBA", ".png", images.photo_png("astronaut", (800, 600), mode="RGBA")))
    cases.append(("coffee 640x480 PNG greyscale", ".png", images.photo_png("coffee", (640, 480), mode="L")))
    cases.append(("chelsea 320x240 GIF first frame", ".gif", images.photo_gif(("chelsea", "coffee"), (320, 240))))
    return cases


def _server_signals(data: bytes) -> signals.ImageSignals:
    return signals.compute_signals(
        data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
    )


def _choose(page, path) -> list[dict]:
    """Pick a file in the form and wait for the page's own signals."""
    page.get_by_label("Your copy of the picture").set_input_files(str(path))
    page.wait_for_selector("#removal-form[data-hashing=done], #removal-form[data-hashing=failed]", timeout=60_000)
    assert page.locator("#removal-form").get_attribute("data-hashing") == "done", page.locator(
        "#device-hashing"
    ).inner_text()
    return json.loads(page.locator("#id_signals").input_value())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_signals_agree_with_the_server(live_server, tmp_path):
    rows = []
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        page.wait_for_selector("#removal-form[data-hashing=idle]")
        assert page.locator("#device-hashing").is_visible()
        assert "Your picture stays on this device." in page.locator("#device-hashing").inner_text()
        for number, (label, suffix, data) in enumerate(_cases()):
            path = tmp_path / f"picture-{number}{suffix}"
            path.write_bytes(data)
            (browser,) = _choose(page, path)
            server = _server_signals(data)
            assert set(browser) == {"phash", "pdq", "pdq_quality", "sha256"}
            # The server takes the browser's dict as it is.
            client = signals.ImageSignals.from_dict(browser)
            phash_d = hamming(client.phash, server.phash)
            pdq_d = None if client.pdq is None or server.pdq is None else hamming(client.pdq, server.pdq)
            rows.append((label, len(data), phash_d, pdq_d, browser["pdq_quality"], server.pdq_quality, browser, server))
            if number == 0:
                # The local preview and the notice are on the page now: still accessible.
                assert page.locator("img.device-preview").count() == 1
                assert page.locator("img.device-preview").get_attribute("src").startswith("blob:")
                assert axe_violations(page) == []

    print()
    print(f"{'image':<40} {'bytes':>9} {'pHash d':>7} {'PDQ d':>5} {'quality b/s':>11}  sha256")
    for label, size, phash_d, pdq_d, quality_b, quality_s, browser, server in rows:
        same = "equal" if browser["sha256"] == server.sha256 else "DIFFERENT"
        pdq_text = "-" if pdq_d is None else str(pdq_d)
        print(f"{label:<40} {size:>9} {phash_d:>7} {pdq_text:>5} {quality_b:>5}/{quality_s:<5}  {same}")
    phash_counts = Counter(row[2] for row in rows)
    pdq_counts = Counter(row[3] for row in rows if row[3] is not None)
    print("pHash distance distribution (bits: files):", dict(sorted(phash_counts.items())))
    print("PDQ distance distribution (bits: files):  ", dict(sorted(pdq_counts.items())))

    for label, _size, phash_d, pdq_d, quality_b, quality_s, browser, server in rows:
        assert browser["sha256"] == server.sha256, label
        assert phash_d <= PHASH_TOLERANCE, label
        assert server.pdq is not None and pdq_d is not None, label  # real photos: PDQ above the floor
        assert pdq_d <= PDQ_TOLERANCE, label
        assert abs(quality_b - quality_s) <= 2, label


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_form_serves_its_own_scripts_only(live_server):
    with chromium_page() as page:
        response = page.goto(f"{live_server.url}/requests/new/")
        policy = response.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"].split() == ["'self'"]
        page.wait_for_selector("#removal-form[data-hashing=idle]")  # the module ran under that policy
        sources = page.eval_on_selector_all("script", "nodes => nodes.map(n => [n.src, n.textContent.trim()])")
        assert sources, "the form has its script"
        for src, inline in sources:
            assert src.startswith(f"{live_server.url}/static/js/") and inline == "", (src, inline)
        script = page.request.get(f"{live_server.url}/static/js/signals.js")
        assert script.ok and "import " not in script.text()  # no dependency of its own


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_file_the_browser_cannot_decode_is_uploaded_instead(live_server, tmp_path):
    # Not an image at all, but named like one: the browser cannot decode it, so the form falls back
    # to the upload, and the server's own refusal is what the person sees.
    path = tmp_path / "not-a-picture.jpg"
    path.write_bytes(images.random_bytes())
    posts = []
    with chromium_page() as page:
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.goto(f"{live_server.url}/requests/new/")
        page.wait_for_selector("#removal-form[data-hashing=idle]")
        page.get_by_label("Links to the picture").fill("https://example.com/a.jpg")
        page.get_by_label("Your copy of the picture").set_input_files(str(path))
        page.wait_for_selector("#removal-form[data-hashing=failed]")
        assert page.locator("#id_signals").input_value() == ""
        assert "could not read the picture" in page.locator("#device-hashing").inner_text()
        assert page.get_by_label("Your copy of the picture").is_enabled()
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector(".errorlist")
        assert "Picture 1: The file is not a JPEG, PNG, WebP or GIF image." in page.content()
    assert len(posts) == 1
    assert RemovalRequest.objects.count() == 0


def _file_and_served_copy(image_server, tmp_path):
    image_server.add(
        "/holiday.jpg", images.photo_jpeg("astronaut", size=(640, 480), quality=80), content_type="image/jpeg"
    )
    my_copy = tmp_path / "my-copy.jpg"
    my_copy.write_bytes(images.photo_jpeg("astronaut", size=(1024, 768), exif_orientation=6))
    return my_copy


@pytest.mark.browser
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("javascript", [True, False], ids=["hashed-in-browser", "uploaded-without-javascript"])
def test_request_filed_either_way_is_verified_alike(
    javascript, live_server, celery_worker_process, image_server, tmp_path
):
    my_copy = _file_and_served_copy(image_server, tmp_path)
    photo = my_copy.read_bytes()
    bodies = []

    with chromium_page(java_script_enabled=javascript) as page:
        page.on("request", lambda r: bodies.append(r.post_data_buffer) if r.method == "POST" else None)
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Links to the picture").fill(image_server.url("/holiday.jpg"))
        page.get_by_label("Your copy of the picture").set_input_files(str(my_copy))
        if javascript:
            page.wait_for_selector("#removal-form[data-hashing=done]")
            assert page.locator("#device-hashing").is_visible()
            assert axe_violations(page) == []
        else:
            assert page.locator("#device-hashing").is_hidden()  # no promise the page cannot keep
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#secret")
        case = page.locator("#case").inner_text().strip()

        wait_for(
            lambda: RemovalRequest.objects.filter(case=case, state="in_review").exists(),
            timeout=90,
            message=lambda: "the worker to verify the request\n" + celery_worker_process.log(),
        )

    removal = RemovalRequest.objects.get(case=case)
    (reference,) = ReferenceSignal.objects.filter(removal=removal)
    assert reference.sha256 == hashlib.sha256(photo).hexdigest()
    server = _server_signals(photo)
    assert hamming(phash_from_hex(reference.phash), server.phash) <= PHASH_TOLERANCE
    assert hamming(pdq_from_hex(reference.pdq), server.pdq) <= PDQ_TOLERANCE
    item = removal.items.get(found_by_system=False)
    assert item.state == "match_strong"
    assert image_server.hits["/holiday.jpg"] == 1

    assert len(bodies) == 1
    if javascript:
        (body,) = bodies
        assert body is not None and b'name="signals"' in body
        assert b"filename=" not in body and b'name="images"' not in body
        assert photo[:4096] not in body and photo[-4096:] not in body
        assert reference.source == ReferenceSignal.Source.CLIENT
        sent = json.loads(body.split(b'name="signals"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0])
        assert sent == [
            {
                "phash": reference.phash,
                "pdq": reference.pdq,
                "pdq_quality": reference.pdq_quality,
                "sha256": reference.sha256,
            }
        ]
    else:
        assert reference.source == ReferenceSignal.Source.UPLOAD
        assert reference.phash == f"{server.phash:016x}"  # the server's own hash of the upload
