"""The console (`/ui`) in a real browser: headless Chromium (Debian's, driven by Playwright)
against a running `wafer dev` and a registry-mode `wafer serve`. Each page is loaded and its
content checked against what the API holds: view names and features, a feature value after a
push (now and `as_of` an earlier time), live health charts, a version switch (rollback) with its
confirmation, and keys issued (shown once, working) and revoked (refused at once).

Screenshots of every page go to target/console-screenshots/ (the note links them).

Run by scripts/test.sh after the Python package's suite (same venv, same fixtures module)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

# The Python package's fixtures (servers on free ports, the guests the Rust build made).
_spec = importlib.util.spec_from_file_location(
    "wafer_fixtures", Path(__file__).resolve().parents[2] / "python" / "tests" / "conftest.py"
)
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

SHOTS = fx.TARGET / "console-screenshots"
CHROMIUM = os.environ.get("WAFER_TEST_CHROMIUM", "/usr/bin/chromium")


def call(url: str, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None):
    """(status, JSON body) of one API call."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if raw is not None:
        req.add_header("Content-Type", "application/wasm")
    elif body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: scripts/test.sh installs Debian's chromium (or set WAFER_TEST_CHROMIUM)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1366, "height": 860})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # JavaScript errors fail the test; a refused API call (401, 404 no_control_plane) is logged by
    # the browser too, and is checked through what the page shows instead.
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None)
    yield pg
    ctx.close()
    assert errors == [], f"the page logged errors: {errors}"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    s = fx.dev_server(tmp_path_factory.mktemp("console-dev"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    # Its own Redis database: the package's tests use 9.
    s = fx.registry_server(tmp_path_factory.mktemp("console-registry"), 10)
    yield s
    s.close()


def push(url: str, view: str, events: list, token: str | None = None) -> dict:
    status, body = call(url, "POST", f"/v1/views/{view}/events", {"events": events}, token)
    assert status == 200, body
    return body


def test_views_lookup_and_health_on_wafer_dev(dev, page: Page):
    now = int(time.time() * 1000)
    two_hours_ago = now - 2 * 3600 * 1000
    push(dev.url, "txn", [
        {"timestamp_ms": two_hours_ago, "value": {"user_id": "ui1", "amount": 10, "country": "DE", "merchant": "m1"}},
        {"timestamp_ms": now, "value": {"user_id": "ui1", "amount": 32.5, "country": "FR", "merchant": "m2"}},
        {"timestamp_ms": now, "value": {"user_id": "ui1", "amount": -1, "country": "FR", "merchant": "m2"}},
    ])

    # Views: every view of the manifest, with kinds, features and aggregations.
    page.goto(dev.url + "/ui")
    expect(page.get_by_role("heading", name="Views")).to_be_visible()
    for name, kind in [("txn", "stream"), ("user_stats", "batch"), ("risk", "request")]:
        expect(page.locator(f"tr[data-view='{name}']")).to_contain_text(kind)
    txn = page.locator("tr[data-view='txn']")
    expect(txn).to_contain_text("amount_sum_24h")
    expect(txn).to_contain_text("sum(amount)")
    expect(txn).to_contain_text("7 d")
    expect(page.locator("tr[data-view='user_stats']")).to_contain_text("last_country")
    page.screenshot(path=str(SHOTS / "views.png"), full_page=True)

    # Feature lookup: the pushed values now (the negative amount was refused as bad input), and
    # as of an hour ago (only the older event).
    page.get_by_role("link", name="Feature lookup").click()
    page.get_by_label("View").select_option("txn")
    page.get_by_label("Entity").fill("ui1")
    page.get_by_label("Features (comma-separated)").fill("country, amount_count_24h, amount_sum_24h, amount_max_lifetime")
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("tr[data-feature='amount_sum_24h'] td").first).to_have_text("42.5")
    expect(page.locator("tr[data-feature='amount_count_24h'] td").first).to_have_text("2")
    expect(page.locator("tr[data-feature='country'] td").first).to_have_text('"FR"')
    page.screenshot(path=str(SHOTS / "lookup.png"), full_page=True)
    one_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime((now - 3600 * 1000) / 1000))
    page.get_by_label("As of (local time; empty: now)").fill(one_hour_ago)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("tr[data-feature='amount_sum_24h'] td").first).to_have_text("10")
    # A latest value written after `as_of` was not known then.
    expect(page.locator("tr[data-feature='country'] td").nth(1)).to_have_text("missing")

    # Health: events by outcome at once; charts once two samples (5 s apart) exist.
    page.get_by_role("link", name="Health").click()
    card = page.locator("section[data-view='txn']")
    expect(card.locator("tr[data-outcome='ok'] td").nth(1)).to_have_text("2")
    expect(card.locator("tr[data-outcome='bad_input'] td").nth(1)).to_have_text("1")
    expect(card).to_contain_text("running")
    push(dev.url, "txn", [{"timestamp_ms": now, "value": {"user_id": "ui2", "amount": 1, "country": "DE", "merchant": "m"}}])
    expect(card.locator("figure.chart polyline").first).to_be_visible(timeout=30_000)
    expect(card.locator("tr[data-outcome='ok'] td").nth(1)).to_have_text("3", timeout=15_000)
    page.screenshot(path=str(SHOTS / "health.png"), full_page=True)

    # Transforms and tenants need registry mode: the pages say so instead of failing.
    page.get_by_role("link", name="Transforms").click()
    expect(page.locator("main")).to_contain_text("serves a manifest")
    assert "key" not in page.url and "token" not in page.url


def with_custom_section(wasm: bytes, note: bytes) -> bytes:
    """The same component with a custom section appended: a new version, the same behaviour."""
    name = b"wafer-console-test"
    payload = bytes([len(name)]) + name + note
    size, leb = len(payload), b""
    while True:
        byte = size & 0x7F
        size >>= 7
        leb += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return wasm + b"\x00" + leb + payload


def test_version_switch_and_keys_in_registry_mode(registry, page: Page):
    tenant = f"ui{uuid.uuid4().hex[:8]}"
    assert call(registry.url, "POST", "/v1/admin/tenants", {"name": tenant}, fx.ADMIN_TOKEN)[0] == 201
    status, k = call(registry.url, "POST", f"/v1/admin/tenants/{tenant}/keys", None, fx.ADMIN_TOKEN)
    assert status == 201, k
    key = k["key"]
    wasm = fx.guest("card_txn.wasm").read_bytes()
    status, v1 = call(registry.url, "PUT", "/v1/transforms/card_txn", token=key, raw=wasm)
    assert status == 201, v1
    status, v2 = call(registry.url, "PUT", "/v1/transforms/card_txn", token=key, raw=with_custom_section(wasm, b"v2"))
    assert status == 201, v2
    assert v1["version"] != v2["version"]
    view = {"kind": "stream", "entity": "user", "transform": "card_txn", "features": ["country"]}
    assert call(registry.url, "PUT", "/v1/views/txn", view, key)[0] in (200, 201)

    page.goto(registry.url + "/ui#/transforms")
    expect(page.locator("#status")).to_contain_text("missing_credentials")
    page.get_by_label("API key").fill(key)
    page.get_by_label("Admin token").fill(fx.ADMIN_TOKEN)
    page.get_by_role("button", name="Use").click()
    card = page.locator("section[data-transform='card_txn']")
    expect(card.locator(f"tr[data-version='{v2['version']}']")).to_contain_text("active")
    expect(card.locator("tbody tr")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "transforms.png"), full_page=True)

    # Roll back to v1: a confirmation first (dismissed: nothing changes), then accepted.
    rollback = card.get_by_role("button", name=f"Roll back to this version {v1['version'][:12]} of card_txn")
    page.once("dialog", lambda d: d.dismiss())
    rollback.click()
    assert call(registry.url, "GET", "/v1/transforms/card_txn", token=key)[1]["active"] == v2["version"]
    page.once("dialog", lambda d: d.accept())
    rollback.click()
    expect(card.locator(f"tr[data-version='{v1['version']}']")).to_contain_text("active")
    expect(page.locator("#status")).to_contain_text("is active")
    assert call(registry.url, "GET", "/v1/transforms/card_txn", token=key)[1]["active"] == v1["version"]
    page.get_by_role("link", name="Views").click()
    expect(page.locator("tr[data-view='txn']")).to_contain_text(v1["version"][:12])

    # Tenants: issue a key (shown once, and it works), then revoke it (refused at once).
    page.get_by_role("link", name="Tenants").click()
    tcard = page.locator(f"section[data-tenant='{tenant}']")
    expect(tcard).to_contain_text("enabled")
    tcard.get_by_role("button", name=f"Issue a key for {tenant}").click()
    secret = page.locator("#new-key-secret")
    expect(secret).to_be_visible()
    new_key = secret.inner_text()
    assert call(registry.url, "GET", "/v1/views", token=new_key)[0] == 200
    page.screenshot(path=str(SHOTS / "tenants.png"), full_page=True)
    rows = tcard.locator("tbody tr[data-key]")
    expect(rows).to_have_count(2)
    ids = [rows.nth(i).get_attribute("data-key") for i in range(2)]
    new_id = next(i for i in ids if i != k["id"])
    page.once("dialog", lambda d: d.accept())
    tcard.get_by_role("button", name=f"Revoke key {new_id} of {tenant}").click()
    expect(tcard.locator(f"tr[data-key='{new_id}']")).to_contain_text("revoked")
    assert call(registry.url, "GET", "/v1/views", token=new_key)[0] == 401
    assert call(registry.url, "GET", "/v1/views", token=key)[0] == 200
    assert new_key not in page.url and key not in page.url
