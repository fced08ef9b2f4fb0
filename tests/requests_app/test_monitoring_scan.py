"""The monitoring scan finds what verification would, and only that: variants, PDQ, descriptors, new references."""

import csv
import random
from dataclasses import replace

import pytest

from optout import imaging
from optout.imaging import hashbits
from optout.index.importer import Columns, import_files
from optout.models import Dataset, DatasetRow
from requests_app import monitoring, services
from requests_app.models import ReferenceSignal, RemovalRequest
from tests.requests_app.builders import reference, submit

pytestmark = pytest.mark.django_db

PHASH = 0x5D2B_913C_77E0_A146
PDQ = random.Random(7).getrandbits(256)


def flipped(value: int, bits: int) -> int:
    return value ^ ((1 << bits) - 1)


def import_rows(tmp_path, name: str, rows: list[dict]) -> Dataset:
    """rows: url, phash, and optionally pdq and pdq_quality, as a dataset file lists them."""
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["url", "phash", "pdq", "pdq_quality"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    "url": row["url"],
                    "phash": f"{row['phash']:016x}",
                    "pdq": f"{row['pdq']:064x}" if row.get("pdq") is not None else "",
                    "pdq_quality": row.get("pdq_quality", ""),
                }
            )
    import_files(name, [path], columns=Columns(phash="phash", pdq="pdq", pdq_quality="pdq_quality"))
    return Dataset.objects.get(name=name)


def monitored(references) -> RemovalRequest:
    removal, _ = submit(references=references, monitor_months=12)
    return removal


def variant(phash: int, name: str, *, pdq: int | None = None) -> services.Reference:
    return services.Reference(
        phash=phash,
        pdq=pdq,
        pdq_quality=90 if pdq is not None else 0,
        sha256="",
        descriptor_key=imaging.variant_descriptor(imaging.descriptor_key(), name),
        source=ReferenceSignal.Source.CLIENT,
        variant=name,
    )


def test_a_copy_of_one_of_the_variants_is_found_and_the_variant_named(tmp_path):
    crop = imaging.REFERENCE_VARIANTS[-1]
    crop_phash = flipped(PHASH, 30)  # far from the picture's own pHash
    removal = monitored([[reference(PHASH), variant(flipped(PHASH, 20), "mirrored"), variant(crop_phash, crop)]])
    dataset = import_rows(
        tmp_path, "datacomp-test", [{"url": "https://cdn.example.net/cut.jpg", "phash": crop_phash ^ 3}]
    )

    assert monitoring.scan_dataset(dataset.pk).found == 1
    item = removal.items.get(url="https://cdn.example.net/cut.jpg")
    assert (item.reference_variant, item.phash_distance) == (crop, 2)


def test_a_pdq_near_copy_counts_only_with_a_known_quality(tmp_path):
    removal = monitored([[reference(PHASH, pdq=PDQ)]])
    far_phash = flipped(PHASH, 40)
    near_pdq = PDQ ^ ((1 << 20) - 1)  # 20 bits off: within the PDQ threshold of 31
    dataset = import_rows(
        tmp_path,
        "datacomp-test",
        [
            {"url": "https://cdn.example.net/known.jpg", "phash": far_phash, "pdq": near_pdq, "pdq_quality": 80},
            # A PDQ of unknown quality is no evidence (verification.row_signals): not a copy.
            {"url": "https://cdn.example.net/unknown.jpg", "phash": far_phash ^ 1, "pdq": near_pdq},
        ],
    )

    assert monitoring.scan_dataset(dataset.pk).found == 1
    item = removal.items.get(added_at__isnull=False)
    assert (item.url, item.pdq_distance, item.state) == ("https://cdn.example.net/known.jpg", 20, "match_weak")


def test_a_reference_under_another_descriptor_is_not_matched_unless_verification_compares_it(tmp_path):
    # An older pipeline's bits: not comparable. A variant of an older set that means what ours means: compared.
    stale = replace(variant(flipped(PHASH, 30), "mirrored"), descriptor_key="phash=imagehash-0.1;pdq=old")
    older = replace(
        variant(flipped(PHASH, 20), "flipped"),
        descriptor_key=imaging.variant_descriptor(imaging.descriptor_key(), "flipped", 1),
    )
    assert imaging.is_comparable(older.descriptor_key, imaging.descriptor_key(), "flipped")
    removal = monitored([[reference(PHASH), stale, older]])
    dataset = import_rows(
        tmp_path,
        "datacomp-test",
        [
            {"url": "https://cdn.example.net/old.jpg", "phash": flipped(PHASH, 30) ^ 1},
            {"url": "https://cdn.example.net/flipped.jpg", "phash": flipped(PHASH, 20) ^ 1},
            {"url": "https://cdn.example.net/copy.jpg", "phash": PHASH ^ 1},
        ],
    )

    assert monitoring.scan_dataset(dataset.pk).found == 2
    assert sorted(removal.items.filter(added_at__isnull=False).values_list("url", "reference_variant")) == [
        ("https://cdn.example.net/copy.jpg", ""),
        ("https://cdn.example.net/flipped.jpg", "flipped"),
    ]


def test_references_monitored_during_a_scan_are_matched_from_the_next_chunk(tmp_path):
    monitored([[reference(PHASH)]])
    other_phash = flipped(PHASH, 32)
    rows = [{"url": f"https://cdn.example.net/{n}.jpg", "phash": other_phash ^ (1 << n)} for n in range(4)]
    dataset = import_rows(tmp_path, "datacomp-test", rows)
    chunk = monitoring.scan_dataset(dataset.pk, chunk_rows=2)
    assert chunk.found == 0

    # A new case is monitored while the scan goes on: the index the scan carries over is rebuilt.
    second = monitored([[reference(other_phash)]])
    rest = monitoring.scan_dataset(dataset.pk, chunk_rows=2, watched=chunk.watched)
    assert rest.watched is not chunk.watched
    assert rest.found == 2
    # The rows of the chunks after it came: the first chunk's were read before the case was monitored.
    after = DatasetRow.objects.filter(dataset=dataset).order_by("id").values_list("url", flat=True)[2:]
    assert sorted(second.items.filter(added_at__isnull=False).values_list("url", flat=True)) == sorted(after)

    # Nothing changed since: the next chunk reuses the index.
    again = monitoring.scan_dataset(dataset.pk, chunk_rows=2, watched=rest.watched)
    assert again.watched is rest.watched


def test_the_reference_hex_is_read_in_bulk_as_hashbits_reads_it():
    values = [PHASH, 0, (1 << 64) - 1]
    words = monitoring._hex_words([hashbits.phash_to_hex(v) for v in values], 16)
    assert words[:, 0].tolist() == values
    # A padded one is left to hashbits, one by one (which strips it), and reads the same.
    pdq_words = monitoring._hex_words([hashbits.pdq_to_hex(PDQ), " " + hashbits.pdq_to_hex(PDQ)], 64)
    assert [hashbits.pdq_from_words(words) for words in pdq_words.tolist()] == [PDQ, PDQ]
    with pytest.raises(hashbits.BadHash):
        monitoring._hex_words(["not a hash"], 16)


def test_chunks_are_ranges_of_ids_and_step_over_the_ids_of_other_datasets(tmp_path):
    removal = monitored([[reference(PHASH)]])
    far = flipped(PHASH, 32)
    first = [{"url": f"https://cdn.example.net/a{n}.jpg", "phash": far ^ n} for n in range(3)]
    dataset = import_rows(tmp_path, "laion-test", first)
    import_rows(tmp_path, "other-test", [{"url": f"https://cdn.example.net/b{n}.jpg", "phash": far} for n in range(5)])
    later = [{"url": f"https://cdn.example.net/c{n}.jpg", "phash": far ^ (n << 8)} for n in range(2)]
    import_rows(tmp_path, "laion-test", [*later, {"url": "https://cdn.example.net/copy.jpg", "phash": PHASH ^ 1}])
    ids = list(DatasetRow.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
    assert ids[3] - ids[2] > 3  # the other dataset's rows took the ids between

    results = []
    while not results or not results[-1].done:
        results.append(monitoring.scan_dataset(dataset.pk, chunk_rows=2))
    assert sum(result.rows for result in results) == 6
    assert [result.rows for result in results] == [2, 1, 2, 1]  # a short chunk before the gap is not the end
    assert sum(result.found for result in results) == 1
    assert removal.items.get(added_at__isnull=False).url == "https://cdn.example.net/copy.jpg"
    assert monitoring.datasets_to_scan() == [Dataset.objects.get(name="other-test").pk]  # never scanned yet
