import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from optout import imaging
from optout.imaging import compute_signals
from requests_app.models import ReferenceSignal, RemovalRequest
from tests import images

URL = "https://images.example.org/private/photo.jpg"


def client_signals(data: bytes | None = None) -> dict:
    return compute_signals(data or images.photo_jpeg(), max_bytes=1 << 24, max_pixels=1 << 26).to_dict()


def create_json(client, **body):
    payload = {"urls": [URL], "signals": [client_signals()]}
    payload.update(body)
    return client.post("/api/v1/requests/", payload, content_type="application/json")


@pytest.mark.django_db
def test_json_with_client_signals_creates_a_case(client):
    response = create_json(client, email="me@example.org")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"case", "secret", "state"}
    assert body["state"] == "received"
    removal = RemovalRequest.objects.get(case=body["case"])
    assert removal.contact_email == "me@example.org"
    assert ReferenceSignal.objects.get(removal=removal).source == "client"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_multipart_with_repeated_fields_and_images(client):
    response = client.post(
        "/api/v1/requests/",
        {
            "urls": [URL, "https://images.example.org/b.jpg\nhttps://images.example.org/c.jpg"],
            "images": [
                SimpleUploadedFile("a.jpg", images.photo_jpeg(), "image/jpeg"),
                SimpleUploadedFile("b.png", images.photo_png("coffee"), "image/png"),
            ],
        },
    )
    assert response.status_code == 201, response.content
    removal = RemovalRequest.objects.get(case=response.json()["case"])
    assert removal.items.count() == 3
    assert removal.references.filter(variant="").count() == 2
    # Each uploaded picture is kept as its variants' signals too (mirrored, turned, cropped), never as pixels.
    assert removal.references.count() == 2 * len(imaging.REFERENCE_VARIANTS)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"urls": []}, "urls"),
        ({"urls": ["file:///etc/passwd"]}, "urls"),
        ({"urls": [f"https://example.org/{i}.jpg" for i in range(21)]}, "urls"),
        ({"signals": []}, "images"),
        ({"signals": [{"phash": "xyz", "pdq": None, "pdq_quality": 0, "sha256": "0" * 64}]}, "signals"),
        ({"signals": [{"phash": "0" * 16, "pdq": None, "pdq_quality": 0, "sha256": "0" * 63}]}, "signals"),
        ({"signals": [{"phash": "0" * 16, "pdq": "ab", "pdq_quality": 90, "sha256": "0" * 64}]}, "signals"),
        ({"dataset": "no-such-dataset"}, "dataset"),
        ({"email": "nope"}, "email"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field(client, body, field):
    response = create_json(client, **body)
    assert response.status_code == 400
    assert set(response.json()) == {field}
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_signals_without_pdq_are_accepted_as_the_device_sends_them(client):
    low_quality = {"phash": "0123456789abcdef", "pdq": None, "pdq_quality": 12, "sha256": "ab" * 32}
    response = create_json(client, signals=[low_quality, {"phash": "fedcba9876543210", "sha256": "cd" * 32}])
    assert response.status_code == 201, response.content
    references = ReferenceSignal.objects.filter(removal__case=response.json()["case"]).order_by("image_index")
    assert [(r.phash, r.pdq, r.pdq_quality) for r in references] == [
        ("0123456789abcdef", "", 12),
        ("fedcba9876543210", "", 0),
    ]


@pytest.mark.django_db
def test_a_pixel_bomb_upload_is_refused(client):
    response = client.post(
        "/api/v1/requests/",
        {"urls": [URL], "images": [SimpleUploadedFile("b.png", images.pixel_bomb_png(), "image/png")]},
    )
    assert response.status_code == 400
    assert "pixels" in str(response.json()["images"])


@pytest.mark.django_db
def test_a_non_image_with_an_image_content_type_is_refused(client):
    response = client.post(
        "/api/v1/requests/",
        {"urls": [URL], "images": [SimpleUploadedFile("x.jpg", b"<html>not a picture</html>", "image/jpeg")]},
    )
    assert response.status_code == 400
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_more_than_ten_files_are_refused_before_parsing(client):
    files = [SimpleUploadedFile(f"{i}.jpg", images.photo_jpeg(size=(32, 24)), "image/jpeg") for i in range(11)]
    response = client.post("/api/v1/requests/", {"urls": [URL], "images": files})
    assert response.status_code == 400
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_status_and_withdraw_with_case_and_secret(client):
    created = create_json(client, email="me@example.org").json()
    credentials = {"case": created["case"], "secret": created["secret"]}
    status = client.post("/api/v1/requests/status/", credentials, content_type="application/json")
    assert status.status_code == 200
    assert status.json() == {
        "case": created["case"],
        "state": "received",
        "items": [{"state": "pending"}],
        "found_later": 0,
        "monitor_until": None,
        "appeal_until": None,
    }
    withdrawn = client.post("/api/v1/requests/withdraw/", credentials, content_type="application/json")
    assert withdrawn.status_code == 200
    assert withdrawn.json()["state"] == "withdrawn"
    assert RemovalRequest.objects.get(case=created["case"]).contact_email == ""
    again = client.post("/api/v1/requests/withdraw/", credentials, content_type="application/json")
    assert again.status_code == 400
    assert "withdrawn" in again.json()["detail"]


@pytest.mark.django_db
def test_wrong_secret_and_unknown_case_get_the_same_answer(client):
    created = create_json(client).json()
    wrong = client.post(
        "/api/v1/requests/status/", {"case": created["case"], "secret": "guess"}, content_type="application/json"
    )
    unknown = client.post(
        "/api/v1/requests/status/", {"case": "OPT-0000-0000-0000", "secret": "guess"}, content_type="application/json"
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.content == unknown.content


@pytest.mark.django_db
def test_secret_guessing_is_limited_per_case_and_client_whatever_the_spelling(client):
    created = create_json(client).json()
    spellings = [created["case"], created["case"].lower(), created["case"].replace("-", " ")]
    statuses = [
        client.post(
            "/api/v1/requests/status/",
            {"case": spellings[n % 3], "secret": f"guess-{n}"},
            content_type="application/json",
            REMOTE_ADDR="198.51.100.7",
        ).status_code
        for n in range(21)
    ]
    assert statuses[:20] == [404] * 20
    assert statuses[20] == 429
    # The guesser is stopped, not the case: its owner, elsewhere, still gets in.
    right = client.post(
        "/api/v1/requests/status/",
        {"case": created["case"], "secret": created["secret"]},
        content_type="application/json",
        REMOTE_ADDR="192.0.2.44",
    )
    assert right.status_code == 200


@pytest.mark.django_db
def test_create_is_rate_limited_on_accepted_requests_only(client):
    for _ in range(12):
        assert create_json(client, urls=["ftp://example.org/a.jpg"]).status_code == 400
    for _ in range(10):
        assert create_json(client).status_code == 201
    response = create_json(client)
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 3600
    assert f"Please try again in {-(-wait // 60)} minute" in response.json()["detail"]
    assert RemovalRequest.objects.count() == 10


@pytest.mark.django_db
def test_the_schema_describes_the_fixed_endpoints(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/requests/", "/api/v1/requests/status/", "/api/v1/requests/withdraw/"} <= set(paths)


@pytest.mark.django_db
def test_the_api_docs_page_loads_no_foreign_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "cdn" not in body.lower()
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_addresses_that_can_never_be_checked_are_refused_by_the_api(client, settings):
    settings.OPTOUT_FETCH_ALLOW_LOOPBACK = False
    response = create_json(client, urls=[URL, "http://169.254.169.254/latest/meta-data/"])
    assert response.status_code == 400
    assert response.json()["urls"] == [
        "Link 2 cannot be checked. This address points to a private, local or reserved network; "
        "only public web addresses are fetched."
    ]
    assert RemovalRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_new_secret_is_grouped_without_look_alikes_and_old_secrets_still_work(client):
    from requests_app import cases

    body = create_json(client).json()
    groups = body["secret"].split("-")
    assert [len(group) for group in groups] == [5] * 8  # 200 bits, more than the 192 of the old secrets
    assert not set("".join(groups)) & set("ILOU_l")
    removal = RemovalRequest.objects.get(case=body["case"])
    # A secret in the old style (token_urlsafe, case-sensitive) keeps matching its stored HMAC.
    old = "aB3_x-9ZlI1Oq7kLmN0pQrStUvWxYz12"
    RemovalRequest.objects.filter(pk=removal.pk).update(secret_hmac=cases.secret_hmac(old))
    status = client.post(
        "/api/v1/requests/status/", {"case": body["case"], "secret": old}, content_type="application/json"
    )
    assert status.status_code == 200
    wrong_case = client.post(
        "/api/v1/requests/status/", {"case": body["case"], "secret": old.upper()}, content_type="application/json"
    )
    assert wrong_case.status_code == 404
