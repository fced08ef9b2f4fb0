"""The client as its own distribution: the wheel built from this repository, installed into a fresh
virtualenv (no Django there), runs pull, filter and check against a live server."""

import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.blocklist import holds, releases
from optout.client.canonical import url_sha256

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT = Path(__file__).resolve().parents[2] / "optout" / "client"
BLOCKED = "https://images.example.org/private/a.jpg"
NEAR_CHECK = """
import numpy as np
from optout.client import nearby
hashes = np.arange(1, 300, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
pdqs = np.stack([hashes, ~hashes, hashes << np.uint64(1), hashes >> np.uint64(1)], axis=1)
print(
    bool(nearby.PHashIndex(hashes, 8).near(hashes ^ np.uint64(0xFF)).all()),
    bool(nearby.PDQIndex(pdqs, 31).near(pdqs ^ np.array([(1 << 31) - 1, 0, 0, 0], dtype=np.uint64)).all()),
    bool(nearby.PHashIndex(hashes, 7).near(hashes ^ np.uint64(0xFF)).any()),
)
"""


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("client-src")
    for path in [*CLIENT.glob("*.py"), CLIENT / "pyproject.toml"]:
        shutil.copy(path, source)
    dist = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source)
    assert built.returncode == 0, built.stderr
    (found,) = dist.glob("optout_client-*.whl")
    return found


def test_the_wheel_holds_the_client_and_its_small_dependency_set(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    modules = sorted(n for n in names if n.endswith(".py"))
    assert "optout/client/cli.py" in modules and "optout/client/batch.py" in modules
    assert all(n.startswith("optout/client/") for n in modules)  # not the server, not optout/__init__.py
    requires, extras = [], []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = line.split(":", 1)[1].strip()
            name = requirement.split(">")[0].split("=")[0].split(";")[0].strip()
            (extras if "extra ==" in requirement else requires).append(name)
    assert sorted(requires) == ["PyNaCl", "numba", "numpy", "platformdirs", "pyarrow"]
    # The engines of the adapters come only with their extras (pip install 'optout-client[spark]').
    assert sorted(extras) == ["datasets", "pyspark"]
    assert "optout-client = optout.client.cli:main" in entry_points


@pytest.fixture
def published(feed_files, signing_key):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED), image_sha256="ab" * 32)
    releases.publish_release(storage=feed_files)
    return signing_key


def test_a_fresh_virtualenv_runs_pull_filter_and_check_against_a_live_server(wheel, published, live_server, tmp_path):
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    assert run(venv / "bin" / "python", "-c", "import django").returncode != 0  # the client needs no Django
    # The near-duplicate kernels compile there (numba from the wheel's dependencies): 8 bits flipped is within 8.
    near = run(venv / "bin" / "python", "-c", NEAR_CHECK)
    assert near.returncode == 0 and near.stdout == "True True False\n", near.stderr

    command = venv / "bin" / "optout-client"
    common = ["--state", tmp_path / "state", "--trust-dir", tmp_path / "trust"]
    pub = tmp_path / "minisign.pub"
    with urllib.request.urlopen(f"{live_server.url}/.well-known/optout/minisign.pub", timeout=10) as response:
        pub.write_bytes(response.read())
    pulled = run(
        command, "pull", "--feed", f"{live_server.url}/feed/v1/public/", "--pubkey", pub, *common, cwd=tmp_path
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled version 1 (snapshot)" in pulled.stdout and "fingerprint SHA256:" in pulled.stdout

    urls = ["HTTPS://IMAGES.Example.org:443/private/a.jpg", "https://example.net/fine.jpg", "not a url at all"]
    pq.write_table(pa.table({"url": urls, "caption": ["a", "b", "c"]}), tmp_path / "part-0.parquet")
    filtered = run(command, "filter", tmp_path / "part-0.parquet", "--out", tmp_path / "clean.parquet", *common)
    assert filtered.returncode == 0, filtered.stderr
    assert filtered.stdout.startswith("3 rows read, 1 kept, 2 dropped (url 1, sha256 0, phash 0, pdq 0, bad_url 1")
    assert pq.read_table(tmp_path / "clean.parquet").column("url").to_pylist() == ["https://example.net/fine.jpg"]

    checked = run(command, "check", BLOCKED, "https://example.net/fine.jpg", *common)
    assert (
        checked.returncode == 3 and checked.stdout == f"blocked\t{BLOCKED}\nnot blocked\thttps://example.net/fine.jpg\n"
    )
