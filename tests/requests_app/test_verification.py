import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import ImageOps

from optout import imaging
from optout.client.canonical import url_sha256
from optout.imaging import compute_signals, hashbits
from optout.models import Dataset, DatasetRow
from requests_app import intake, services, verification
from requests_app.models import ItemState, RemovalRequest, RemovalState, RequestEvent
from tests import images
from tests.requests_app.builders import submit


def signals_of(data: bytes):
    return compute_signals(data, max_bytes=1 << 24, max_pixels=1 << 26)


def reference_of(data: bytes) -> services.Reference:
    s = signals_of(data)
    return services.Reference(s.phash, s.pdq, s.pdq_quality, s.sha256, imaging.descriptor_key(), "upload")


def index_row(dataset: Dataset, url: str, data: bytes) -> DatasetRow:
    s = signals_of(data)
    words = hashbits.pdq_to_words(s.pdq) if s.pdq is not None else (None,) * 4
    return DatasetRow.objects.create(
        dataset=dataset,
        url=url,
        url_sha256=url_sha256(url),
        sha256=s.sha256,
        phash=hashbits.to_signed64(s.phash),
        pdq_0=words[0],
        pdq_1=words[1],
        pdq_2=words[2],
        pdq_3=words[3],
        pdq_quality=s.pdq_quality,
    )


def states(removal) -> dict[str, str]:
    return {item.url: item.state for item in removal.items.all()}


@pytest.mark.django_db
def test_each_item_gets_the_verdict_its_url_deserves(image_server, fetch_connections):
    mine = images.photo_jpeg("astronaut", size=(800, 600))
    image_server.add(
        "/same.jpg", images.photo_jpeg("astronaut", size=(640, 480), quality=75), content_type="image/jpeg"
    )
    image_server.add("/other.jpg", images.photo_jpeg("coffee"), content_type="image/jpeg")
    image_server.add("/page.jpg", b"<html>hello</html>", content_type="image/jpeg")
    image_server.add("/gone.jpg", b"", status=404)
    urls = {
        image_server.url("/same.jpg"): ItemState.MATCH_STRONG,
        image_server.url("/other.jpg"): ItemState.NO_MATCH,
        image_server.url("/page.jpg"): ItemState.NOT_AN_IMAGE,
        image_server.url("/gone.jpg"): ItemState.UNREACHABLE,
        "http://10.0.0.7/private.jpg": ItemState.REFUSED,
    }
    removal, _ = submit(urls=list(urls), references=[[reference_of(mine)]])

    # The 404 may be a passing outage: it is tried again, up to the attempt limit.
    runs = [verification.run_verification(removal.pk) for _ in range(settings.OPTOUT_VERIFY_MAX_ATTEMPTS)]

    assert runs == [False] * (settings.OPTOUT_VERIFY_MAX_ATTEMPTS - 1) + [True]
    assert image_server.hits["/gone.jpg"] == settings.OPTOUT_VERIFY_MAX_ATTEMPTS
    assert image_server.hits["/same.jpg"] == 1
    removal.refresh_from_db()
    assert removal.state == RemovalState.IN_REVIEW
    assert states(removal) == urls
    same = removal.items.get(url=image_server.url("/same.jpg"))
    assert same.phash_distance <= 4 and same.pdq_distance <= 20
    assert same.image_sha256 and len(same.image_phash) == 16
    assert all(address.is_loopback for address, _ in fetch_connections)
    assert [e.to_state for e in RequestEvent.objects.filter(removal=removal)] == ["received", "checking", "in_review"]


@pytest.mark.django_db
def test_an_indexed_url_is_judged_by_its_stored_signals_without_fetching(image_server):
    dataset = Dataset.objects.create(name="laion-test")
    image_server.add("/photo.jpg", images.photo_jpeg("coffee"), content_type="image/jpeg")
    url = image_server.url("/photo.jpg")
    index_row(dataset, url, images.photo_jpeg("astronaut"))
    removal, _ = submit(urls=[url], references=[[reference_of(images.photo_jpeg("astronaut", size=(500, 400)))]])

    verification.run_verification(removal.pk)

    item = removal.items.get(found_by_system=False)
    assert item.state == ItemState.MATCH_STRONG
    assert item.dataset_row.dataset == dataset
    assert image_server.hits.get("/photo.jpg", 0) == 0


@pytest.mark.django_db
def test_other_copies_in_the_index_are_attached_as_found_by_the_system():
    dataset = Dataset.objects.create(name="laion-test")
    copy = index_row(dataset, "https://cdn.example.net/copy.jpg", images.photo_jpeg("astronaut", size=(300, 225)))
    index_row(dataset, "https://cdn.example.net/unrelated.jpg", images.photo_jpeg("rocket"))
    removal, _ = submit(
        urls=["http://10.1.2.3/x.jpg"], references=[[reference_of(images.photo_jpeg("astronaut"))]], dataset=dataset
    )

    verification.run_verification(removal.pk)

    found = removal.items.get(found_by_system=True)
    assert found.dataset_row == copy
    assert found.state == ItemState.MATCH_STRONG
    assert removal.items.count() == 2


@pytest.mark.django_db
def test_running_verification_twice_changes_nothing(image_server):
    image_server.add("/same.jpg", images.photo_jpeg("chelsea"), content_type="image/jpeg")
    removal, _ = submit(urls=[image_server.url("/same.jpg")], references=[[reference_of(images.photo_jpeg("chelsea"))]])
    verification.run_verification(removal.pk)
    before = (list(removal.items.values()), RequestEvent.objects.filter(removal=removal).count())

    verification.run_verification(removal.pk)

    assert (list(removal.items.values()), RequestEvent.objects.filter(removal=removal).count()) == before
    assert image_server.hits["/same.jpg"] == 1


@pytest.mark.django_db
def test_a_withdrawn_request_is_not_verified(image_server):
    image_server.add("/same.jpg", images.photo_jpeg("chelsea"), content_type="image/jpeg")
    removal, _ = submit(urls=[image_server.url("/same.jpg")])
    services.withdraw_removal(removal)

    verification.run_verification(removal.pk)

    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.WITHDRAWN
    assert image_server.hits.get("/same.jpg", 0) == 0


@pytest.mark.django_db
def test_an_item_whose_verification_keeps_crashing_is_given_up(image_server, monkeypatch):
    image_server.add("/same.jpg", images.photo_jpeg("chelsea"), content_type="image/jpeg")
    removal, _ = submit(urls=[image_server.url("/same.jpg")], references=[[reference_of(images.photo_jpeg("chelsea"))]])

    def crash(*args, **kwargs):
        raise SystemExit("worker killed")  # as if the process died mid-verification

    monkeypatch.setattr(verification.imaging, "candidate_variants", crash)
    for _ in range(settings.OPTOUT_VERIFY_MAX_ATTEMPTS):
        with pytest.raises(SystemExit):
            verification.run_verification(removal.pk)

    assert verification.run_verification(removal.pk) is True
    item = removal.items.get()
    assert item.state == ItemState.UNREACHABLE
    assert "did not finish" in item.detail
    assert RemovalRequest.objects.get(pk=removal.pk).state == RemovalState.IN_REVIEW


@pytest.mark.django_db
def test_a_copy_known_by_its_sha256_alone_is_found_as_a_weak_match():
    dataset = Dataset.objects.create(name="laion-test")
    data = images.photo_jpeg("rocket")
    row = DatasetRow.objects.create(
        dataset=dataset,
        url="https://cdn.example.net/same-bytes.jpg",
        url_sha256=url_sha256("https://cdn.example.net/same-bytes.jpg"),
        sha256=signals_of(data).sha256,
    )
    removal, _ = submit(urls=["http://10.1.2.3/x.jpg"], references=[[reference_of(data)]])

    verification.run_verification(removal.pk)

    found = removal.items.get(found_by_system=True)
    assert found.dataset_row == row
    assert found.sha256_equal is True
    assert found.state == ItemState.MATCH_WEAK  # a sha256 alone is never strong evidence


@pytest.mark.django_db
def test_a_row_without_a_known_sha256_never_counts_as_identical_bytes(image_server):
    """A client may send any sha256, e.g. all zeros: it must not match rows whose bytes we never saw."""
    dataset = Dataset.objects.create(name="laion-test")
    url = "https://cdn.example.net/unhashed.jpg"
    row = index_row(dataset, url, images.photo_jpeg("rocket"))
    DatasetRow.objects.filter(pk=row.pk).update(sha256="")
    forged = services.Reference(
        phash=0, pdq=None, pdq_quality=0, sha256="0" * 64, descriptor_key=imaging.descriptor_key(), source="client"
    )
    removal, _ = submit(urls=[url], references=[[forged]])

    verification.run_verification(removal.pk)

    item = removal.items.get()
    assert (item.state, item.sha256_equal) == (ItemState.NO_MATCH, False)


def _picture_with_mirrored_variant(data: bytes, variant_set: int) -> list[services.Reference]:
    """A reference picture and its mirrored variant, the variant stored under ``variant_set``'s descriptor."""
    own, mirrored = (
        variant
        for variant in imaging.reference_variants(imaging.decode_image(data, max_bytes=1 << 24, max_pixels=1 << 26))
        if variant.name in ("", "mirrored")
    )
    key = imaging.descriptor_key()
    return [
        reference_of(data),
        services.Reference(
            mirrored.signals.phash,
            mirrored.signals.pdq,
            mirrored.signals.pdq_quality,
            "",
            imaging.variant_descriptor(key, "mirrored", variant_set),
            "upload",
            variant="mirrored",
        ),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("variant_set", "verdict"), [(1, ItemState.MATCH_STRONG), (99, ItemState.NO_MATCH)])
def test_a_variant_of_an_older_set_is_compared_and_one_of_an_unknown_set_is_not(image_server, variant_set, verdict):
    mine = images.photo_jpeg("coffee", size=(800, 600))
    image_server.add(
        "/mirrored.jpg",
        images.encode(ImageOps.mirror(images.photo("coffee", (640, 480))), "JPEG"),
        content_type="image/jpeg",
    )
    removal, _ = submit(
        urls=[image_server.url("/mirrored.jpg")], references=[_picture_with_mirrored_variant(mine, variant_set)]
    )

    verification.run_verification(removal.pk)

    item = removal.items.get()
    assert item.state == verdict
    assert item.reference_variant == ("mirrored" if verdict == ItemState.MATCH_STRONG else "")


def _uploaded(data: bytes) -> list[list[services.Reference]]:
    """The reference picture as an upload is hashed: its own signals and every variant of the set."""
    return intake.hash_uploads([SimpleUploadedFile("mine.jpg", data, "image/jpeg")])


@pytest.mark.django_db
def test_a_named_copy_with_a_logo_over_a_tenth_of_a_texture_is_verified_and_told(image_server):
    image_server.add(
        "/stock.jpg",
        images.encode(images.with_logo(images.photo("grass"), (0, 1)), "JPEG", quality=85),
        content_type="image/jpeg",
    )
    removal, _ = submit(
        urls=[image_server.url("/stock.jpg")], references=_uploaded(images.photo_jpeg("grass", size=(512, 512)))
    )

    verification.run_verification(removal.pk)

    item = removal.items.get()
    assert item.state in (ItemState.MATCH_WEAK, ItemState.MATCH_STRONG)
    # Through the link's picture with that corner painted over, or (variant set 5) the reference's badge
    # there, compared with the picture as fetched: either way the reviewer is told of the corner.
    assert item.candidate_variant.startswith("painted-top-right") or (
        item.reference_variant.startswith("badge-top-right") and not item.candidate_variant
    ), (item.reference_variant, item.candidate_variant)
    assert "top-right corner" in imaging.describe(item.reference_variant, item.candidate_variant)


@pytest.mark.django_db
# A photo is found as it is; a texture only through a badge (variant sets 4 and 5), which set 3 could not.
@pytest.mark.parametrize(("name", "through"), [("astronaut", ""), ("grass", "badge-top-right")])
def test_an_indexed_copy_with_a_logo_over_a_tenth_of_it_is_found_by_the_system(name, through):
    dataset = Dataset.objects.create(name="laion-test")
    stock = images.encode(images.with_logo(images.photo(name), (0, 1)), "JPEG", quality=85)
    copy = index_row(dataset, "https://cdn.example.net/stock.jpg", stock)
    index_row(dataset, "https://cdn.example.net/unrelated.jpg", images.photo_jpeg("rocket"))
    mine = images.encode(images.photo(name), "JPEG", quality=92)
    removal, _ = submit(urls=["http://10.1.2.3/x.jpg"], references=_uploaded(mine), dataset=dataset)

    verification.run_verification(removal.pk)

    found = removal.items.get(found_by_system=True)
    assert found.dataset_row == copy
    assert found.state in (ItemState.MATCH_WEAK, ItemState.MATCH_STRONG)
    assert found.reference_variant.startswith(through)
