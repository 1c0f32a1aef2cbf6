"""The demo's "your devices" page in a real browser: headless Chromium, driven by Playwright.

The demo runs as its own process over SQLite (as ``coatcheck demo``); each browser context is one
device with its own user agent and cookie jar. Screenshots are decoded here (a small PNG reader)
and checked for what they show. With ``COATCHECK_WRITE_SCREENSHOTS=1`` the devices page is also
saved as docs/images/demo-devices.png, the picture the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, FloatRect, Locator, Page, ViewportSize, expect, sync_playwright

from tests.servers import ROOT
from tests.test_servers import _demo

CHROMIUM = "/usr/bin/chromium"  # Debian's package: no browser is downloaded
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
DESKTOP: ViewportSize = {"width": 1024, "height": 768}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 10_000  # the longest any page state is waited for
SCREENSHOT = ROOT / "docs" / "images" / "demo-devices.png"
SIGNED_IN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (scripts/services.sh does)"
        if os.environ.get("COATCHECK_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    with _demo(f"sqlite:///{tmp_path}/demo.db") as demo:
        yield demo.url


@pytest.fixture(autouse=True)
def _timeouts() -> None:
    expect.set_options(timeout=WAIT_MS)


def _device(chromium: Browser, user_agent: str, *, phone: bool = False) -> BrowserContext:
    """A browser context that is one device: its user agent, its screen, its own cookies."""
    context = chromium.new_context(
        user_agent=user_agent,
        viewport=PHONE if phone else DESKTOP,
        device_scale_factor=1,
        is_mobile=phone,
        has_touch=phone,
        color_scheme="light",
    )
    context.set_default_timeout(WAIT_MS)
    return context


def _log_in(context: BrowserContext, url: str, name: str) -> Page:
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your devices")).to_be_visible()
    return page


def _row(page: Page, name: str) -> Locator:
    return page.locator("li.device").filter(has=page.locator(".name", has_text=re.compile(f"^{re.escape(name)}$")))


def _token(page: Page) -> str:
    return page.locator('input[name="csrf"]').first.get_attribute("value") or ""


# -- screenshots ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    channels: int  # 3 (RGB) or 4 (RGBA)
    rows: list[bytes]  # ``height`` rows of ``width * channels`` bytes, unfiltered

    def region(self, box: FloatRect) -> list[tuple[int, int, int]]:
        """The RGB pixels inside ``box`` (a Playwright bounding box, in CSS pixels = image pixels here)."""
        left, top = max(0, int(box["x"])), max(0, int(box["y"]))
        right, bottom = min(self.width, int(box["x"] + box["width"])), min(self.height, int(box["y"] + box["height"]))
        step, pixels = self.channels, list[tuple[int, int, int]]()
        for row in self.rows[top:bottom]:
            line = row[left * step : right * step]
            pixels.extend(zip(line[0::step], line[1::step], line[2::step], strict=True))
        return pixels


def read_png(path: Path) -> Png:
    """Decode the PNG at ``path`` (8-bit RGB or RGBA, not interlaced: what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour in (2, 6), f"{path}: depth {depth}, colour {colour}, interlace {interlace}"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    assert len(raw) == height * (stride + 1), f"{path}: {len(raw)} bytes of pixels for {width} x {height}"
    rows, above = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        above = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), above, channels)
        rows.append(above)
    return Png(width, height, channels, rows)


def _unfilter(kind: int, line: bytearray, above: bytes, bpp: int) -> bytes:
    if kind == 2:  # Up
        return bytes((x + b) & 0xFF for x, b in zip(line, above, strict=True))
    if kind == 1:  # Sub
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 3:  # Average
        for i in range(len(line)):
            line[i] = (line[i] + (((line[i - bpp] if i >= bpp else 0) + above[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(line)):
            a, b = (line[i - bpp] if i >= bpp else 0), above[i]
            c = above[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    else:
        assert kind == 0, f"unknown PNG filter {kind}"
    return bytes(line)


def _ink(pixels: list[tuple[int, int, int]]) -> int:
    """How many of ``pixels`` are text or drawing: well darker than the page's light greys and white."""
    return sum(1 for r, g, b in pixels if r + g + b < 450)


def _shot(page: Page, path: Path, size: ViewportSize) -> tuple[Png, list[tuple[int, int, int]]]:
    """A screenshot of the viewport, checked to be a real picture of ``size``, and the pixels of its devices list."""
    page.screenshot(path=path)
    image = read_png(path)
    assert (image.width, image.height) == (size["width"], size["height"])
    box = page.locator("#devices").bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 50, box
    devices = image.region(box)
    assert len(set(devices)) > 20, f"{path}: the devices list has {len(set(devices))} colours: blank?"
    assert _ink(devices) > len(devices) // 100, f"{path}: hardly any text in the devices list"
    return image, devices


# -- the tests --------------------------------------------------------------------------------------


def test_devices_page_lists_marks_and_signs_out_a_device(chromium: Browser, demo_url: str, tmp_path: Path) -> None:
    laptop, phone = _device(chromium, FIREFOX_LINUX), _device(chromium, SAFARI_IPHONE, phone=True)
    try:
        page = _log_in(laptop, demo_url, "alice")
        expect(page.locator("li.device")).to_have_count(1)
        expect(page.get_by_text("Welcome, alice")).to_be_visible()
        one, one_devices = _shot(page, tmp_path / "one-device.png", DESKTOP)

        on_phone = _log_in(phone, demo_url, "alice")
        expect(on_phone.locator("li.device")).to_have_count(2)
        assert on_phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        _shot(on_phone, tmp_path / "phone.png", PHONE)

        page.reload()
        rows = page.locator("li.device")
        expect(rows).to_have_count(2)
        mine, other = _row(page, "Firefox on Linux"), _row(page, "Safari on iOS")
        expect(mine).to_have_class(re.compile(r"\bcurrent\b"))
        expect(mine.locator(".badge")).to_have_text("This device")
        expect(page.locator(".badge")).to_have_count(1)
        expect(mine.get_by_role("button")).to_have_count(0)  # this device logs out below, not here
        for row in (mine, other):
            expect(row.locator(".where")).to_have_text("127.0.0.0/24")
            expect(row.locator(".signed-in")).to_have_text(SIGNED_IN)
            expect(row.locator(".last-active")).to_have_text("just now")
        assert rows.first.locator(".name").inner_text() == "Firefox on Linux"  # this device comes first
        expect(_row(on_phone, "Safari on iOS").locator(".badge")).to_have_text("This device")  # each sees itself

        two, two_devices = _shot(page, tmp_path / "two-devices.png", DESKTOP)
        assert two.rows != one.rows
        assert _ink(two_devices) > _ink(one_devices) * 3 // 2  # a second card's worth of text
        if os.environ.get("COATCHECK_WRITE_SCREENSHOTS") == "1":
            page.screenshot(path=tmp_path / "docs.png", full_page=True)
            read_png(tmp_path / "docs.png")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / "docs.png", SCREENSHOT)

        other.get_by_role("button", name="Sign out").click()
        expect(page.locator(".flash")).to_have_text("Signed out Safari on iOS.")
        expect(page.locator("li.device")).to_have_count(1)
        expect(page.get_by_role("button", name="Log out other devices")).to_be_disabled()

        on_phone.reload()  # the phone's next page load: signed out
        expect(on_phone.get_by_role("heading", name="Sign in")).to_be_visible()
        page.reload()
        expect(page.locator("li.device")).to_have_count(1)
        expect(page.locator(".flash")).to_have_count(0)  # shown once

        page.get_by_role("button", name="Log out", exact=True).click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        laptop.close()
        phone.close()


def test_log_out_other_devices(chromium: Browser, demo_url: str) -> None:
    devices = [_device(chromium, FIREFOX_LINUX), _device(chromium, SAFARI_IPHONE, phone=True), _device(chromium, CHROME_WINDOWS)]
    try:
        pages = [_log_in(context, demo_url, "bob") for context in devices]
        windows = pages[2]
        windows.reload()
        expect(windows.locator("li.device")).to_have_count(3)
        expect(_row(windows, "Chrome on Windows").locator(".badge")).to_have_text("This device")
        windows.get_by_role("button", name="Log out other devices").click()
        expect(windows.locator(".flash")).to_have_text("Signed out 2 other devices.")
        expect(windows.locator("li.device")).to_have_count(1)
        for page in pages[:2]:
            page.reload()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        windows.reload()
        expect(windows.locator("li.device .name")).to_have_text("Chrome on Windows")

        windows.get_by_role("button", name="Log out everywhere").click()
        expect(windows.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        for context in devices:
            context.close()


def test_posts_need_the_sessions_token(chromium: Browser, demo_url: str) -> None:
    laptop, phone, other = (
        _device(chromium, FIREFOX_LINUX),
        _device(chromium, SAFARI_IPHONE, phone=True),
        _device(chromium, CHROME_WINDOWS),
    )
    try:
        page, on_phone = _log_in(laptop, demo_url, "carol"), _log_in(phone, demo_url, "carol")
        page.reload()
        token, phone_handle = _token(page), _row(page, "Safari on iOS").get_attribute("data-handle")
        assert token and phone_handle
        for path in ("/logout-others", "/logout-everywhere", "/logout", "/revoke"):
            for form in ({}, {"csrf": "not-the-token"}, {"csrf": _token(on_phone)}):  # none, forged, another session's
                response = laptop.request.post(demo_url + path, form={**form, "handle": phone_handle}, max_redirects=0)
                assert response.status == 403, (path, form, response.status)
        # The right token from another site's page: refused by its Origin.
        response = laptop.request.post(
            demo_url + "/logout-others", form={"csrf": token}, headers={"Origin": "http://attacker.example"}, max_redirects=0
        )
        assert response.status == 403
        page.reload()
        expect(page.locator("li.device")).to_have_count(2)  # nothing was ended
        on_phone.reload()
        expect(on_phone.locator("li.device")).to_have_count(2)

        # A user ends only their own sessions: another user's handle, with carol's own token, ends nothing.
        stranger = _log_in(other, demo_url, "mallory")
        handle = stranger.locator("li.device.current").get_attribute("data-handle")
        response = laptop.request.post(demo_url + "/revoke", form={"csrf": token, "handle": handle or ""}, max_redirects=0)
        assert response.status == 303
        page.reload()
        expect(page.locator(".flash")).to_have_text("That device was already signed out.")
        stranger.reload()
        expect(stranger.get_by_role("heading", name="Your devices")).to_be_visible()

        # The token, in the page's own form, is all it takes.
        response = laptop.request.post(demo_url + "/revoke", form={"csrf": token, "handle": phone_handle}, max_redirects=0)
        assert response.status == 303
        on_phone.reload()
        expect(on_phone.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        for context in (laptop, phone, other):
            context.close()
