"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright (no browser download)."""

import json
import os
from contextlib import contextmanager
from pathlib import Path

from django.db import connections

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(**context_options):
    # Playwright's sync API runs an event loop in this thread; Django's ORM
    # calls from the test itself are still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(**context_options)
            yield context.new_page()
        finally:
            # Database queries made inside this block get connections of their own (Playwright runs an
            # event loop here, and Django keeps connections per context): close them, or they outlive the test.
            connections.close_all()
            browser.close()


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core in the page; the violations of the given impact levels."""
    if not AXE.is_file():
        raise AssertionError(f"axe-core is not installed at {AXE}: run `npm ci`")
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations = json.loads(result)["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in violations
        if v["impact"] in impacts
    ]
