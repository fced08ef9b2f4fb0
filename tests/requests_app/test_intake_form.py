import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from requests_app.intake import MAX_URLS
from requests_app.models import ReferenceSignal, RemovalRequest
from tests import images

URL = "https://images.example.org/private/photo.jpg"


def upload(data: bytes, name: str = "copy.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def post(client, **fields):
    data = {"urls": URL, "confirm": "on", "images": [upload(images.photo_jpeg())]}
    data.update(fields)
    return client.post("/requests/new/", data)


@pytest.mark.django_db
def test_the_form_page_is_served(client):
    response = client.get("/requests/new/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'enctype="multipart/form-data"' in body
    assert "never stored" in body


@pytest.mark.django_db
def test_a_valid_request_redirects_to_a_receipt_that_shows_its_secret_once(client):
    response = post(client, contact_email="me@example.org")
    assert response.status_code == 303
    assert response["Location"] == "/requests/receipt/"
    assert "no-store" in response["Cache-Control"].split(", ")
    removal = RemovalRequest.objects.get()
    receipt = client.get("/requests/receipt/")
    assert receipt.status_code == 200
    assert "no-store" in receipt["Cache-Control"].split(", ")
    assert receipt["Referrer-Policy"] == "no-referrer"
    body = receipt.content.decode()
    assert removal.case in body
    secret = receipt.context["secret"]
    assert 'data-value="' + secret + '"' in body
    assert secret in receipt.context["receipt"]
    assert removal.contact_email == "me@example.org"
    reference = ReferenceSignal.objects.get(removal=removal, variant="")
    assert reference.source == "upload"
    assert len(reference.phash) == 16 and len(reference.sha256) == 64
    # Shown once: a reload of the receipt, and any later page, hold no secret; nothing is filed again.
    again = client.get("/requests/receipt/")
    assert again.status_code == 410
    assert secret not in again.content.decode() and removal.case not in again.content.decode()
    assert "already shown" in again.content.decode()
    assert secret not in client.get("/requests/status/").content.decode()
    assert RemovalRequest.objects.count() == 1
    # The secret works on the status page, typed in lower case and without its dashes.
    typed = secret.replace("-", "").lower()
    assert client.post("/requests/status/", {"case": removal.case, "secret": typed}).status_code == 200


@pytest.mark.django_db
def test_the_receipt_comes_with_and_without_the_links(client):
    post(client, urls=URL)
    receipt = client.get("/requests/receipt/")
    assert URL not in receipt.context["receipt"]
    assert URL in receipt.context["receipt_with_links"]
    body = receipt.content.decode()
    assert body.count("images.example.org") == 1  # only in the download that says it has the links
    assert "images.example.org" in body[body.index('id="download-receipt-links"') :]


@pytest.mark.django_db
def test_a_forged_or_stale_receipt_cookie_shows_no_secret(client, settings):
    from django.core import signing

    from requests_app import receipts

    post(client)
    removal = RemovalRequest.objects.get()
    # A cookie signed with another key, or naming the case with a wrong secret, shows nothing.
    client.cookies[receipts.COOKIE] = signing.dumps({"case": removal.case, "secret": "x"}, salt="requests_app.receipt")
    assert client.get("/requests/receipt/").status_code == 410
    client.cookies[receipts.COOKIE] = "garbage"
    assert client.get("/requests/receipt/").status_code == 410


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"urls": ""}, "urls", "at least one link"),
        ({"urls": "\n".join(f"https://example.org/{i}.jpg" for i in range(MAX_URLS + 1))}, "urls", "at most 20 links"),
        ({"urls": "ftp://example.org/a.jpg"}, "urls", "starting with http"),
        ({"urls": "javascript:alert(1)"}, "urls", "starting with http"),
        ({"images": []}, "images", "Choose your copy"),
        ({"images": [upload(images.pixel_bomb_png(), "bomb.png", "image/png")]}, "images", "pixels"),
        ({"images": [upload(images.random_bytes(), "fake.jpg", "image/jpeg")]}, "images", "Picture 1"),
        ({"images": [upload(images.svg_file(), "x.svg", "image/svg+xml")]}, "images", "Picture 1"),
        ({"images": [upload(images.truncated_jpeg())]}, "images", "Picture 1"),
        ({"images": [upload(images.photo_jpeg(size=(64, 48))) for _ in range(6)]}, "images", "at most 5"),
        ({"confirm": ""}, "confirm", "confirm the statement"),
        ({"contact_email": "not-an-address"}, "contact_email", "valid email"),
    ],
)
def test_refusals_are_shown_next_to_the_field_and_in_a_summary(client, fields, field, message):
    response = post(client, **fields)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors
    assert message.lower() in " ".join(errors[field]).lower()
    body = response.content.decode()
    assert 'class="error-summary"' in body
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_other_input_is_kept_after_an_error(client):
    response = post(client, confirm="", urls="https://example.org/keep-me.jpg", contact_email="keep@example.org")
    body = response.content.decode()
    assert "https://example.org/keep-me.jpg" in body
    assert "keep@example.org" in body


@pytest.mark.django_db
def test_the_form_needs_its_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = post(client)
    assert response.status_code == 403
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_too_many_requests_from_one_client_get_429_with_the_input_kept_and_a_time(client):
    for _ in range(10):
        assert post(client, images=[upload(images.photo_jpeg(size=(64, 48)))]).status_code == 303
    response = post(
        client,
        images=[upload(images.photo_jpeg(size=(64, 48)))],
        urls="https://example.org/kept.jpg",
        contact_email="k@example.org",
    )
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 3600
    body = response.content.decode()
    minutes = -(-wait // 60)
    assert f"Please try again in {minutes} minute" in body
    assert "https://example.org/kept.jpg" in body and "k@example.org" in body
    assert 'id="error-summary"' in body
    assert RemovalRequest.objects.count() == 10


@pytest.mark.django_db
def test_refused_forms_do_not_count_against_the_limit(client):
    for _ in range(15):
        assert post(client, urls="not a link").status_code == 400
    for _ in range(10):
        assert post(client, images=[upload(images.photo_jpeg(size=(64, 48)))]).status_code == 303
    assert post(client).status_code == 429
    assert RemovalRequest.objects.count() == 10


@pytest.mark.django_db
def test_ipv6_clients_are_counted_per_64(client):
    def from_address(address):
        return client.post(
            "/requests/new/",
            {"urls": URL, "confirm": "on", "images": [upload(images.photo_jpeg(size=(64, 48)))]},
            REMOTE_ADDR=address,
        )

    for host in range(10):
        assert from_address(f"2001:db8:1:2::{host + 1:x}").status_code == 303
    assert from_address("2001:db8:1:2:ffff::1").status_code == 429
    assert from_address("2001:db8:1:3::1").status_code == 303


@pytest.mark.django_db
def test_an_oversized_body_is_refused_before_it_is_read(client, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post(client, images=[upload(images.photo_jpeg(size=(1600, 1200)))] * 5)
    assert response.status_code == 413
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_an_oversized_picture_is_refused_by_size(client, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 20_000
    data = images.photo_jpeg(size=(800, 600))
    assert len(data) > 20_000
    response = post(client, images=[upload(data)])
    assert response.status_code == 400
    assert "larger than" in " ".join(response.context["form"].errors["images"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/a.jpg",
        "http://192.168.1.1/photo.jpg",
        "http://127.0.0.1/a.jpg",
        "http://localhost/a.jpg",
        "http://[::1]/a.jpg",
        "http://[fe80::1]/a.jpg",
        "http://[::ffff:10.0.0.1]/a.jpg",
        "http://2130706433/a.jpg",  # 127.0.0.1 spelt as one number
    ],
)
def test_addresses_that_can_never_be_checked_are_refused_on_the_form(client, settings, url):
    settings.OPTOUT_FETCH_ALLOW_LOOPBACK = False
    response = post(client, urls=f"https://images.example.org/fine.jpg\n{url}")
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors["urls"])
    assert "Link 2 cannot be checked" in errors
    assert "only public web addresses" in errors
    assert url in response.content.decode()  # the input is kept to be corrected
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_port_we_never_fetch_is_refused_on_the_form(client, settings):
    settings.OPTOUT_FETCH_ALLOW_LOOPBACK = False
    response = post(client, urls="https://images.example.org:8443/a.jpg")
    assert response.status_code == 400
    assert "standard web ports" in " ".join(response.context["form"].errors["urls"])


@pytest.mark.django_db
def test_the_demo_loopback_exception_stays(client, settings):
    settings.OPTOUT_FETCH_ALLOW_LOOPBACK = True
    assert post(client, urls="http://127.0.0.1:8000/demo/images/astronaut.jpg").status_code == 303
