"""The load mix for Locust (bench/load/run.py starts it; it targets 127.0.0.1 only).

Requesters file removal requests through the browser path (the form, with the signals the
page's script computes, then the receipt page it is redirected to) and the upload path (the API, multipart with the picture), then check
their cases' status. Dataset builders poll the feed manifest with If-None-Match, fetch an
artifact now and then, and call the lookup API.

The rate limits stay on. Each simulated client speaks from its own address in 127.0.0.0/8 and
moves to a fresh one before it would pass a limit, as many people from many addresses would.
Every 201 is written down (case, number of links) for the harness to audit afterwards.
"""

import json
import os
import random
import re
import sys
import threading
import time
from pathlib import Path

from locust import HttpUser, between, events, task
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.load.stack import LoopbackAddresses, dataset_url  # noqa: E402
from optout.imaging import compute_signals  # noqa: E402
from optout.index import demo  # noqa: E402

RESULTS = os.environ.get("LOAD_RESULTS", "load-results.json")
HOST_PREFIX = ("http://127.0.0.1:", "http://localhost:")

# Stay under each limit of requests_app/limits.py and the lookup API per address, with room to spare.
BUDGET = {"create": 8, "status": 25, "lookup": 100}
STATUS_CHECKS_PER_CASE = 12

PHOTOS = list(demo.PHOTOS)
SIGNALS = {
    photo: compute_signals(demo.image_bytes(f"{photo}-original"), max_bytes=1 << 24, max_pixels=1 << 26)
    for photo in PHOTOS
}
UPLOADS = {photo: demo.image_bytes(f"{photo}-small") for photo in PHOTOS}
CASE_RE = re.compile(r'id="case">([^<]+)<')
SECRET_RE = re.compile(r'id="secret" data-value="([^"]+)"')
TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

addresses = LoopbackAddresses(second_octet=random.randint(2, 250))  # noqa: S311 (not for secrets)
created: dict[str, int] = {}
statuses: dict[str, dict[str, int]] = {}
_lock = threading.Lock()


class SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source: str):
        self.source = source
        super().__init__(pool_connections=2, pool_maxsize=2, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


@events.request.add_listener
def _count_status(request_type, name, response_time, response_length, response=None, exception=None, **kwargs):
    status = getattr(response, "status_code", 0) or 0
    label = str(status) if status else type(exception).__name__ if exception else "0"
    with _lock:
        by_status = statuses.setdefault(name, {})
        by_status[label] = by_status.get(label, 0) + 1


@events.test_start.add_listener
def _only_loopback(environment, **kwargs):
    if not (environment.host or "").startswith(HOST_PREFIX):
        raise SystemExit("bench/load targets loopback only: --host http://127.0.0.1:PORT")


@events.quitting.add_listener
def _write_results(environment, **kwargs):
    stats = environment.stats
    endpoints = {}
    for (name, _method), entry in stats.entries.items():
        if not entry.num_requests:
            continue
        endpoints[name] = {
            "requests": entry.num_requests,
            "rps": entry.total_rps,
            "p50": entry.get_response_time_percentile(0.50),
            "p95": entry.get_response_time_percentile(0.95),
            "p99": entry.get_response_time_percentile(0.99),
            "max": entry.max_response_time,
            "statuses": statuses.get(name, {}),
        }
    Path(RESULTS).write_text(json.dumps({"endpoints": endpoints, "created": created}, indent=2, sort_keys=True))


class LoopbackClient(HttpUser):
    abstract = True

    def on_start(self):
        self.used = dict.fromkeys(BUDGET, 0)
        self._move()

    def _move(self):
        self.client.mount("http://", SourceAddressAdapter(addresses.take()))
        self.client.cookies.clear()
        self.used = dict.fromkeys(BUDGET, 0)

    def spend(self, what: str):
        if self.used[what] >= BUDGET[what]:
            self._move()
        self.used[what] += 1


class Requester(LoopbackClient):
    weight = 3
    wait_time = between(1, 3)

    def on_start(self):
        super().on_start()
        self.cases: list[list] = []  # [case, secret, checks]

    def _demo_urls(self, photo: str) -> list[str]:
        variants = random.sample(demo.VARIANTS, k=random.randint(1, 3))  # noqa: S311
        return [dataset_url(f"{photo}-{variant}") for variant in variants]

    def _created(self, case: str, secret: str, links: int):
        with _lock:
            created[case] = links
        self.cases.append([case, secret, 0])

    @task(2)
    def file_by_browser(self):
        """The form, with the signals computed on the device (what signals.js puts in the hidden field)."""
        self.spend("create")
        page = self.client.get("/requests/new/", name="browser: new form")
        token = TOKEN_RE.search(page.text or "")
        if token is None:
            return
        photo = random.choice(PHOTOS)  # noqa: S311
        urls = self._demo_urls(photo)
        form = {
            "csrfmiddlewaretoken": token[1],
            "urls": "\n".join(urls),
            "signals": json.dumps([SIGNALS[photo].to_dict()]),
            "confirm": "on",
        }
        headers = {"Referer": f"{self.host}/requests/new/"}
        with self.client.post(
            "/requests/new/",
            data=form,
            headers=headers,
            allow_redirects=False,
            name="create: browser (signals)",
            catch_response=True,
        ) as response:
            if response.status_code != 303:
                return  # counted as a failure with its status
            response.success()
        # Post/redirect/get: the receipt page shows the case and its secret once.
        receipt = self.client.get(response.headers["Location"], name="browser: receipt")
        case, secret = CASE_RE.search(receipt.text or ""), SECRET_RE.search(receipt.text or "")
        if receipt.status_code == 200 and case and secret:
            self._created(case[1].strip(), secret[1].strip(), len(urls))

    @task(1)
    def file_by_upload(self):
        """The API with the picture itself, hashed in the server's memory."""
        self.spend("create")
        photo = random.choice(PHOTOS)  # noqa: S311
        urls = self._demo_urls(photo)
        with self.client.post(
            "/api/v1/requests/",
            data={"urls": urls},
            files={"images": (f"{photo}.jpg", UPLOADS[photo], "image/jpeg")},
            name="create: upload (API)",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                body = response.json()
                self._created(body["case"], body["secret"], len(urls))
                response.success()

    @task(4)
    def check_status(self):
        open_cases = [entry for entry in self.cases if entry[2] < STATUS_CHECKS_PER_CASE]
        if not open_cases:
            return
        entry = random.choice(open_cases)  # noqa: S311
        entry[2] += 1
        self.spend("status")
        self.client.post("/api/v1/requests/status/", json={"case": entry[0], "secret": entry[1]}, name="status")


class Builder(LoopbackClient):
    weight = 2
    wait_time = between(0.5, 2)

    def on_start(self):
        super().on_start()
        self.etag = None
        self.artifact = None

    @task(5)
    def manifest(self):
        headers = {"If-None-Match": self.etag} if self.etag else {}
        with self.client.get(
            "/feed/v1/public/manifest.json", headers=headers, name="feed: manifest", catch_response=True
        ) as response:
            if response.status_code == 200:
                self.etag = response.headers.get("ETag")
                self.artifact = response.json()["snapshot"]["path"]
                response.success()
            elif response.status_code == 304:
                response.success()

    @task(1)
    def artifact_file(self):
        if self.artifact:
            self.client.get(f"/feed/v1/public/{self.artifact}", name="feed: artifact")

    @task(2)
    def lookup(self):
        self.spend("lookup")
        photo = random.choice(PHOTOS)  # noqa: S311
        items = [dataset_url(f"{photo}-{variant}") for variant in demo.VARIANTS]
        items.append(f"https://images.example.org/{time.monotonic_ns()}.jpg")
        self.client.post("/api/v1/blocklist/lookup/", json={"items": items}, name="lookup")
