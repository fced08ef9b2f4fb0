"""Fixtures for the builder client: real releases made by the server's code, served on loopback.

``mirror`` serves the release files of a temporary storage folder with the
ImageServer (so a test can swap in a forged manifest or artifact); the tests
that use the real feed views take ``live_server`` instead.
"""

import json
from pathlib import Path

import pytest

from optout.blocklist import releases, signing
from optout.client import cli, state
from tests.optout.conftest import feed_files, publish, signing_key  # noqa: F401  (fixtures used here)


class FeedMirror:
    """The release files of both tiers at ``/feed/v1/<tier>/`` on a loopback server."""

    def __init__(self, server, root: Path, key: signing.SigningKey):
        self.server = server
        self.root = root
        self.signing_key = key

    def sync(self) -> None:
        """Serve every file the storage holds now (call it after publishing)."""
        for tier in releases.TIERS:
            folder = self.root / releases.FEED_ROOT / tier
            for path in folder.iterdir() if folder.is_dir() else ():
                self.server.add(f"/feed/v1/{tier}/{path.name}", path.read_bytes())

    def base(self, tier: str = "public") -> str:
        return self.server.url(f"/feed/v1/{tier}/")

    def file(self, name: str, tier: str = "public") -> bytes:
        return (self.root / releases.FEED_ROOT / tier / name).read_bytes()

    def manifest(self, tier: str = "public") -> dict:
        return json.loads(self.file("manifest.json", tier))

    def serve(self, name: str, body: bytes, tier: str = "public") -> None:
        self.server.add(f"/feed/v1/{tier}/{name}", body)

    def serve_manifest(self, manifest: dict, *, key: signing.SigningKey | None = None, tier: str = "public") -> bytes:
        """Serve ``manifest`` as the current one, signed (by the feed's key unless ``key`` says otherwise)."""
        body = releases.canonical_json(manifest)
        signature = (key or self.signing_key).sign(body, trusted_comment=releases.trusted_comment(manifest))
        self.serve("manifest.json", body, tier)
        self.serve("manifest.json.minisig", signature.encode(), tier)
        return body


@pytest.fixture(autouse=True)
def trust_dir(tmp_path, monkeypatch):
    """Pinned keys go to a temporary trust directory, never the user's configuration."""
    path = tmp_path / "trust"
    monkeypatch.setenv(state.TRUST_DIR_ENV, str(path))
    return path


@pytest.fixture
def mirror(image_server, feed_files, signing_key):  # noqa: F811
    mirror = FeedMirror(image_server, Path(feed_files.location), signing_key)
    mirror.sync()
    return mirror


@pytest.fixture
def builder(capsys, tmp_path):
    """Run the client's command line in-process: ``code, out, err = builder("status")``.

    ``--state`` defaults to one temporary directory per test.
    """
    state_dir = tmp_path / "state"

    def run(*args: str) -> tuple[int, str, str]:
        args = [str(arg) for arg in args]
        if "--state" not in args:
            args += ["--state", str(state_dir)]
        capsys.readouterr()
        code = cli.main(args)
        out, err = capsys.readouterr()
        return code, out, err

    run.state_dir = state_dir
    return run
