"""The filter inside other tools: Hugging Face ``datasets``, the img2dataset recipe, and the hash lines
that ThreatExchange and hasher-matcher-actioner import."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.blocklist import holds
from optout.client import adapters, batch, state
from optout.client.canonical import url_sha256
from optout.client.filter import FilterError

pytestmark = pytest.mark.django_db

BLOCKED = "https://images.example.org/private/a.jpg"
SHA_BLOCKED = "ab" * 32
PDQ = (0xF0 << 248) | 0x1234
URLS = [
    "HTTPS://IMAGES.Example.org:443/private/a.jpg",
    "https://cdn.example.net/ok.jpg",
    "not a url",
    "https://mirror.example/x.jpg",
]
SHAS = ["", "cd" * 32, "", SHA_BLOCKED]


@pytest.fixture
def pulled(mirror, publish, builder, signing_key):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED), image_sha256=SHA_BLOCKED, pdq=PDQ, pdq_quality=90)
    publish()
    mirror.sync()

    def pull_tier(tier: str = "public"):
        code, out, err = builder("pull", "--feed", mirror.base(tier), "--pubkey", signing_key.public_key.to_base64())
        assert code == 0, err
        return state.load(builder.state_dir)

    return pull_tier


@pytest.mark.parametrize("arrow_format", [True, False], ids=["arrow", "python"])
def test_a_datasets_filter_keeps_what_the_rules_keep(pulled, arrow_format):
    datasets = pytest.importorskip("datasets")
    rules = batch.Rules(pulled())
    columns = batch.Columns(url="url", sha256="sha256")
    dataset = datasets.Dataset.from_dict({"url": URLS * 3, "sha256": SHAS * 3, "caption": ["c"] * 12})
    if arrow_format:
        dataset = dataset.with_format("arrow")
    clean = dataset.filter(adapters.datasets_predicate(rules, columns), batched=True, batch_size=5)
    urls = clean["url"].to_pylist() if arrow_format else clean["url"]
    assert urls == ["https://cdn.example.net/ok.jpg"] * 3
    expected = rules.filter(pa.record_batch({"url": URLS, "sha256": SHAS}), columns).column("url").to_pylist()
    assert expected == ["https://cdn.example.net/ok.jpg"]


def test_img2dataset_output_is_filtered_by_its_sha256_column(pulled, builder, tmp_path):
    """The README recipe's second half, on a shard shaped like img2dataset's Parquet output."""
    pulled()
    shard = pa.table(
        {
            "url": ["https://elsewhere.example/copy.jpg", "https://cdn.example.net/ok.jpg"],
            "caption": ["a copy of the same bytes", "fine"],
            "key": ["000000000", "000000001"],
            "status": ["success", "success"],
            "error_message": pa.array([None, None], pa.string()),
            "width": pa.array([256, 256], pa.int64()),
            "height": pa.array([256, 256], pa.int64()),
            "original_width": pa.array([1024, 800], pa.int64()),
            "original_height": pa.array([768, 600], pa.int64()),
            "exif": ["{}", "{}"],
            "sha256": [SHA_BLOCKED, "ef" * 32],
        }
    )
    (tmp_path / "out").mkdir()
    pq.write_table(shard, tmp_path / "out" / "00000.parquet")
    code, out, err = builder(
        "filter", str(tmp_path / "out" / "*.parquet"), "--out", tmp_path / "clean", "--sha256-column", "sha256"
    )
    assert code == 0, err
    kept = pq.read_table(tmp_path / "clean" / "00000.parquet")
    assert kept.schema == shard.schema and kept.column("key").to_pylist() == ["000000001"]
    assert "sha256 1" in out


def test_export_hashes_writes_pdq_lines_that_threatexchange_parses(pulled, builder, tmp_path):
    pulled("partner")
    code, out, err = builder("export-hashes", "--out", tmp_path / "hashes.txt")
    assert code == 0, err
    lines = (tmp_path / "hashes.txt").read_text().splitlines()
    assert lines == [f"pdq {PDQ:064x}"] and out.startswith("wrote 1 pdq hashes")
    signal = pytest.importorskip("threatexchange.signal_type.pdq.signal")
    for line in lines:
        name, value = line.split(" ")
        assert name == signal.PdqSignal.get_name()
        assert signal.PdqSignal.validate_signal_str(value) == value


def test_export_hashes_needs_the_partner_tier(pulled, builder, tmp_path):
    pulled("public")
    code, out, err = builder("export-hashes", "--out", tmp_path / "hashes.txt")
    assert code == 1 and "needs the partner feed" in err and not (tmp_path / "hashes.txt").exists()


@pytest.mark.parametrize(
    ("distances", "message"),
    [({"max_distance": 8}, "--phash-column"), ({"max_pdq_distance": 31}, "--pdq-column")],
)
def test_a_spark_job_refuses_a_distance_without_the_column_of_its_hash(tmp_path, distances, message):
    # Before the state is even read: no row would ever be compared, and nothing near would be dropped.
    with pytest.raises(FilterError, match=message):
        adapters.spark_job(tmp_path / "no-state", batch.Columns(url="url"), **distances)
