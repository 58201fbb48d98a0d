"""Helpers shared by the UX browser tests: log in, and check a page fits the viewport."""

from __future__ import annotations

from typing import Any

from conftest import PASSWORD

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

# Elements that stick out of the viewport (a table may scroll inside its own box, which is fine).
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  // Inside a small box that scrolls sideways (a wide table, code, logs) content is reachable, not clipped;
  // the page's main column scrolling sideways is exactly what must not happen, so it does not count.
  const scrolls = (el) => {
    const box = el.parentElement && el.parentElement.closest('table, pre, .table-scroll, .logs, .katex-display');
    return Boolean(box) && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
  };
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || el.closest('dialog:not([open])')) continue;
    const out = box.right > width + 1 || box.left < -1;
    if (out && !scrolls(el)) wide.push(`${el.tagName}.${el.className} ${Math.round(box.right)}`);
  }
  return {scroll: document.documentElement.scrollWidth, width: width, wide: wide.slice(0, 5)};
}"""


def login(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def assert_fits(page: Any) -> None:
    found = page.evaluate(OVERFLOW_JS)
    assert found["scroll"] <= found["width"] and not found["wide"], f"{page.url}: {found}"
