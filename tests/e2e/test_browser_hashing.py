"""The picture never leaves the device: the form hashes it in the browser (static/js/signals.js).

The browser's signals must agree with the server's (optout.imaging.compute_signals) on the same
file: pHash within 4 bits, PDQ within 10 bits, sha256 identical; and so must every one of the
picture's variants (optout.imaging.reference_variants: dihedral turns and crops), name for name. A request filed this way sends
no file and is verified exactly like one filed with an upload; without JavaScript the upload
path still works.
"""

import base64
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from django.conf import settings

from optout import imaging
from optout.imaging.hashbits import hamming, pdq_from_hex, phash_from_hex
from requests_app.models import ReferenceSignal, RemovalRequest
from tests import images
from tests.e2e.browser import axe_violations, chromium_page
from tests.e2e.conftest import wait_for

PHASH_TOLERANCE = 4
PDQ_TOLERANCE = 10
# A variant is hashed from the same arithmetic on both sides (bit for bit: see the test on shared pixels),
# but from the browser's own decode: a JPEG reduced by libjpeg's DCT scaling on the server and by a box
# average here. Crops magnify that difference a little.
VARIANT_PHASH_TOLERANCE = 8
VARIANT_PDQ_TOLERANCE = 16
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
    cases.append(("astronaut 4000x3000 JPEG (12 MP)", ".jpg", images.photo_jpeg("astronaut", (4000, 3000), 90)))
    cases.append(("coffee 2050x1550 JPEG EXIF 3", ".jpg", images.photo_jpeg("coffee", (2050, 1550), 85, 3)))
    cases.append(("chelsea 1550x2050 PNG", ".png", images.photo_png("chelsea", (1550, 2050))))
    cases.append(
        ("motorcycle_left 1024x768 JPEG EXIF 6", ".jpg", images.photo_jpeg("motorcycle_left", (1024, 768), 80, 6))
    )
    cases.append(("astronaut 800x600 PNG RGBA", ".png", images.photo_png("astronaut", (800, 600), mode="RGBA")))
    cases.append(("coffee 640x480 PNG greyscale", ".png", images.photo_png("coffee", (640, 480), mode="L")))
    cases.append(("chelsea 320x240 GIF first frame", ".gif", images.photo_gif(("chelsea", "coffee"), (320, 240))))
    return cases


def _server_signals(data: bytes) -> imaging.ImageSignals:
    return imaging.compute_signals(
        data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
    )


def _choose(page, path) -> list[dict]:
    """Pick a file in the form and wait for the page's own signals."""
    page.get_by_label("Your copy of the picture").set_input_files(str(path))
    page.wait_for_selector(
        "#removal-form[data-hashing=done], #removal-form[data-hashing=failed]", state="attached", timeout=60_000
    )
    state = page.locator("#removal-form").get_attribute("data-hashing")
    assert state == "done", page.locator("#device-hashing").inner_text()
    return json.loads(page.locator("#id_signals").input_value())


def _server_variants(data: bytes) -> list[imaging.Variant]:
    return imaging.reference_variants(
        imaging.decode_image(
            data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
        )
    )


def _distances(one: imaging.ImageSignals, other: imaging.ImageSignals) -> tuple[int, int | None]:
    pdq = None if one.pdq is None or other.pdq is None else hamming(one.pdq, other.pdq)
    return hamming(one.phash, other.phash), pdq


@dataclass
class Agreement:
    label: str
    size: int
    milliseconds: int
    browser: dict
    server: imaging.ImageSignals
    naive: imaging.ImageSignals

    def distances(self, other: imaging.ImageSignals) -> tuple[int, int | None]:
        # The server takes the browser's dict as it is, variants and all.
        client = imaging.variants_from_dict(self.browser)[0].signals
        return _distances(client, other)

    def variant_distances(self, data: bytes) -> dict[str, tuple[int, int | None]]:
        """Per variant name, the distances between the browser's and the server's variant of the same file."""
        client = {variant.name: variant.signals for variant in imaging.variants_from_dict(self.browser)}
        return {variant.name: _distances(client[variant.name], variant.signals) for variant in _server_variants(data)}


def _print_table(rows: list[Agreement]) -> None:
    print()
    print("Browser (static/js/signals.js in Chromium) against the server's compute_signals on the same file;")
    print("'naive' is the reference pipeline (full decode, imagehash.phash, pdqhash.compute), for scale.")
    print(
        f"{'image':<38} {'bytes':>9} {'ms':>5} {'pHash d':>7} {'PDQ d':>5} {'quality b/s':>11} {'sha256':>6}  naive pHash/PDQ d"
    )
    for row in rows:
        phash_d, pdq_d = row.distances(row.server)
        naive_phash_d, naive_pdq_d = row.distances(row.naive)
        quality = f"{row.browser['pdq_quality']}/{row.server.pdq_quality}"
        same = "equal" if row.browser["sha256"] == row.server.sha256 else "DIFF"
        print(
            f"{row.label:<38} {row.size:>9} {row.milliseconds:>5} {phash_d:>7} {pdq_d if pdq_d is not None else '-':>5}"
            f" {quality:>11} {same:>6}  {naive_phash_d}/{naive_pdq_d if naive_pdq_d is not None else '-'}"
        )
    phash_counts = Counter(row.distances(row.server)[0] for row in rows)
    pdq_counts = Counter(row.distances(row.server)[1] for row in rows)
    print(f"pHash distance to the server (bits: files): {dict(sorted(phash_counts.items()))}")
    print(f"PDQ distance to the server (bits: files):   {dict(sorted(pdq_counts.items(), key=str))}")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_signals_agree_with_the_server(live_server, tmp_path):
    rows = []
    variant_rows = []
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        page.wait_for_selector("#removal-form[data-hashing=idle]", state="attached")
        assert page.locator("#device-hashing").is_visible()
        assert "Your picture stays on this device." in page.locator("#device-hashing").inner_text()
        for number, (label, suffix, data) in enumerate(_cases()):
            path = tmp_path / f"picture-{number}{suffix}"
            path.write_bytes(data)
            started = time.monotonic()
            (browser,) = _choose(page, path)
            milliseconds = round((time.monotonic() - started) * 1000)
            assert set(browser) == {"phash", "pdq", "pdq_quality", "sha256", "variant_set", "variants"}
            naive = imaging.compute_signals_naive(data)
            rows.append(Agreement(label, len(data), milliseconds, browser, _server_signals(data), naive))
            variant_rows.append((label, rows[-1].variant_distances(data)))
            if number == 0:
                # The local preview and the notice are on the page now: still accessible.
                assert page.locator("img.device-preview").count() == 1
                assert page.locator("img.device-preview").get_attribute("src").startswith("blob:")
                assert axe_violations(page) == []

    _print_table(rows)
    worst = {
        name: (max(d[name][0] for _, d in variant_rows), max(d[name][1] or 0 for _, d in variant_rows))
        for name in imaging.REFERENCE_VARIANTS
    }
    print(f"every variant of every file, worst pHash/PDQ distance browser-server: {worst}")
    for label, distances in variant_rows:
        assert set(distances) == set(imaging.REFERENCE_VARIANTS), label
        for name, (phash_d, pdq_d) in distances.items():
            assert phash_d <= VARIANT_PHASH_TOLERANCE, (label, name, phash_d)
            assert pdq_d is None or pdq_d <= VARIANT_PDQ_TOLERANCE, (label, name, pdq_d)
    for row in rows:
        phash_d, pdq_d = row.distances(row.server)
        assert row.browser["sha256"] == row.server.sha256, row.label
        assert phash_d <= PHASH_TOLERANCE, row.label
        assert row.server.pdq is not None and pdq_d is not None, row.label  # real photos: PDQ above the floor
        assert pdq_d <= PDQ_TOLERANCE, row.label
        assert abs(row.browser["pdq_quality"] - row.server.pdq_quality) <= 2, row.label


_SIGNALS_FROM_LUMA = """async ([encoded, rows, cols, geometry]) => {
    const { signalsFromLuma } = await import("/static/js/signals.js");
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    return signalsFromLuma({ luma: new Float32Array(bytes.buffer), cols, rows }, geometry);
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_variant_is_the_same_bits_from_the_same_pixels(live_server):
    """Given the server's own decoded pixels, signals.js computes every variant exactly as the server does."""
    cases = [
        images.photo_jpeg("astronaut", (1024, 768), 85),  # reduced by 2
        images.photo_jpeg("rocket", (3000, 2000), 85, exif_orientation=6),  # by 4, turned, short block first
        images.photo_png("chelsea", (451, 300)),  # not reduced
        images.photo_png("coffee", (640, 480), mode="L"),
        images.photo_jpeg("coffee", (4000, 3000), 90),  # 12 MP: reduced by 4, every crop cut from the grid
        images.photo_png("camera", (200, 150)),  # smaller than the variant grid: the grid is upsampled
    ]
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        for data in cases:
            decoded = imaging.decode_image(
                data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
            )
            rows, cols = decoded.luma.shape
            geometry = {
                "width": decoded.width,
                "height": decoded.height,
                "scale": decoded.scale,
                "sha256": decoded.sha256,
                "anchors": {"x": decoded.short_x, "y": decoded.short_y},
            }
            encoded = base64.b64encode(decoded.luma.astype("<f4").tobytes()).decode()
            browser = page.evaluate(_SIGNALS_FROM_LUMA, [encoded, rows, cols, geometry])
            server = imaging.variants_to_dict(imaging.reference_variants(decoded))
            assert browser["variants"].keys() == server["variants"].keys()
            differing = [name for name in server["variants"] if browser["variants"][name] != server["variants"][name]]
            assert differing == [], (decoded.width, decoded.height, differing)
            assert browser == server


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_form_serves_its_own_scripts_only(live_server):
    with chromium_page() as page:
        response = page.goto(f"{live_server.url}/requests/new/")
        policy = response.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"].split() == ["'self'"]
        page.wait_for_selector("#removal-form[data-hashing=idle]", state="attached")  # the module ran under that policy
        sources = page.eval_on_selector_all("script", "nodes => nodes.map(n => [n.src, n.textContent.trim()])")
        assert sources, "the form has its script"
        for src, inline in sources:
            assert src.startswith(f"{live_server.url}/static/js/") and inline == "", (src, inline)
        # No dependency of its own: signals.js imports only its sibling modules, served from the same place.
        seen, pending = set(), ["signals.js"]
        while pending:
            name = pending.pop()
            seen.add(name)
            script = page.request.get(f"{live_server.url}/static/js/{name}")
            assert script.ok, name
            for specifier in re.findall(r'^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', script.text(), re.M):
                assert re.fullmatch(r"\./[a-z-]+\.js", specifier), (name, specifier)
                if specifier[2:] not in seen:
                    pending.append(specifier[2:])
        assert seen == {"signals.js", "kernels.js", "variants.js"}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_file_the_browser_cannot_decode_is_uploaded_instead(live_server, tmp_path):
    # It starts like a JPEG (so the device's type check lets it through), but the rest is noise: the
    # browser cannot decode it, so the form falls back to the upload, and the server's own refusal is
    # what the person sees. (A file that is no picture at all is refused on the device: see
    # tests/e2e/test_requester_pages.py.)
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + images.random_bytes())
    posts = []
    with chromium_page() as page:
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.goto(f"{live_server.url}/requests/new/")
        page.wait_for_selector("#removal-form[data-hashing=idle]", state="attached")
        page.get_by_label("Links to the picture").fill("https://example.com/a.jpg")
        page.get_by_label("Your copy of the picture").set_input_files(str(path))
        page.wait_for_selector("#removal-form[data-hashing=failed]", state="attached")
        assert page.locator("#id_signals").input_value() == ""
        assert "could not be worked out on this device" in page.locator("#device-hashing").inner_text()
        assert "stays on this device" not in page.locator("#device-hashing").inner_text()
        assert page.get_by_label("Your copy of the picture").is_enabled()
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector(".errorlist")
        assert "Picture 1: The image file is damaged" in page.content()
    assert len(posts) == 1
    assert RemovalRequest.objects.count() == 0


def _post_bodies(page) -> list:
    bodies = []
    page.on("request", lambda r: bodies.append(r.post_data_buffer) if r.method == "POST" else None)
    return bodies


def _assert_no_file_sent(body: bytes, photo: bytes) -> dict:
    """The request body carries the signals and no file part; returns the one signals dict sent."""
    assert body is not None and b'name="signals"' in body
    assert b"filename=" not in body and b'name="images"' not in body
    assert photo[:4096] not in body and photo[-4096:] not in body
    (sent,) = json.loads(body.split(b'name="signals"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0])
    return sent


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sending_while_the_picture_is_hashed_waits_for_the_fingerprints(live_server, tmp_path):
    photo = images.photo_jpeg("retina", (5000, 4000), 85)  # 20 megapixels: long enough to click meanwhile
    path = tmp_path / "big.jpg"
    path.write_bytes(photo)
    with chromium_page() as page:
        bodies = _post_bodies(page)
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Links to the picture").fill("https://example.com/a.jpg")
        page.get_by_label("I confirm").check()
        page.get_by_label("Your copy of the picture").set_input_files(str(path))
        assert page.locator("#removal-form").get_attribute("data-hashing") == "pending"
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#secret")
    (body,) = bodies
    sent = _assert_no_file_sent(body, photo)
    assert sent["sha256"] == hashlib.sha256(photo).hexdigest()
    (reference,) = ReferenceSignal.objects.filter(variant="")
    assert reference.source == ReferenceSignal.Source.CLIENT and reference.phash == sent["phash"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_fingerprints_are_kept_when_the_form_comes_back_with_an_error(live_server, tmp_path):
    photo = images.photo_webp("coffee", (1024, 768))
    path = tmp_path / "mine.webp"
    path.write_bytes(photo)
    with chromium_page() as page:
        bodies = _post_bodies(page)
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Links to the picture").fill("not a link")
        page.get_by_label("I confirm").check()
        (computed,) = _choose(page, path)
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector(".errorlist")
        # The page came back without the file, but with the fingerprints, and says so.
        page.wait_for_selector("#removal-form[data-hashing=done]", state="attached")
        assert "from your last try are kept" in page.locator("#device-hashing").inner_text()
        assert json.loads(page.locator("#id_signals").input_value()) == [computed]
        assert page.get_by_label("Your copy of the picture").is_enabled()
        assert axe_violations(page) == []
        page.get_by_label("Links to the picture").fill("https://example.com/a.jpg")
        page.get_by_label("I confirm").check()
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_selector("#secret")
    assert len(bodies) == 2
    for body in bodies:
        assert _assert_no_file_sent(body, photo) == computed
    (reference,) = ReferenceSignal.objects.filter(variant="")
    assert reference.sha256 == hashlib.sha256(photo).hexdigest()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_several_pictures_each_get_their_signals_in_order(live_server, tmp_path):
    photos = [images.photo_png("astronaut", (640, 480)), images.photo_jpeg("rocket", (800, 600), exif_orientation=8)]
    paths = [tmp_path / "one.png", tmp_path / "two.jpg"]
    for path, photo in zip(paths, photos, strict=True):
        path.write_bytes(photo)
    with chromium_page() as page:
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Your copy of the picture").set_input_files([str(path) for path in paths])
        page.wait_for_selector("#removal-form[data-hashing=done]", state="attached")
        computed = json.loads(page.locator("#id_signals").input_value())
        assert page.locator("img.device-preview").count() == 2
    assert [item["sha256"] for item in computed] == [hashlib.sha256(photo).hexdigest() for photo in photos]
    for item, photo in zip(computed, photos, strict=True):
        server = _server_signals(photo)
        assert hamming(phash_from_hex(item["phash"]), server.phash) <= PHASH_TOLERANCE
        assert hamming(pdq_from_hex(item["pdq"]), server.pdq) <= PDQ_TOLERANCE


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
    with chromium_page(java_script_enabled=javascript) as page:
        bodies = _post_bodies(page)
        page.goto(f"{live_server.url}/requests/new/")
        page.get_by_label("Links to the picture").fill(image_server.url("/holiday.jpg"))
        page.get_by_label("Your copy of the picture").set_input_files(str(my_copy))
        if javascript:
            page.wait_for_selector("#removal-form[data-hashing=done]", state="attached")
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
    (reference,) = ReferenceSignal.objects.filter(removal=removal, variant="")
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
        sent = _assert_no_file_sent(body, photo)
        assert reference.source == ReferenceSignal.Source.CLIENT
        assert {key: sent[key] for key in ("phash", "pdq", "pdq_quality", "sha256")} == {
            "phash": reference.phash,
            "pdq": reference.pdq,
            "pdq_quality": reference.pdq_quality,
            "sha256": reference.sha256,
        }
        # The device's variants are kept as they came, one row each under the picture's index.
        stored = {ref.variant: ref.phash for ref in ReferenceSignal.objects.filter(removal=removal)}
        assert stored == {"": sent["phash"], **{name: value["phash"] for name, value in sent["variants"].items()}}
    else:
        assert reference.source == ReferenceSignal.Source.UPLOAD
        assert reference.phash == f"{server.phash:016x}"  # the server's own hash of the upload
    assert ReferenceSignal.objects.filter(removal=removal).count() == len(imaging.REFERENCE_VARIANTS)
