"""The report in a real headless Chromium: no console errors, every image decoded, TOC links resolve.

Needs /usr/bin/chromium (or chromium/google-chrome on PATH) and chromedriver; ``make browser``
installs them. A missing browser FAILS this test (it is part of the contract), it is not skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import report_fixtures as fx
from torchloupe.reporting import available_sections, build_report

pytestmark = pytest.mark.browser

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


def _find(names: tuple[str, ...], fixed: str) -> str | None:
    if Path(fixed).exists():
        return fixed
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chrome_driver(width: int = 1280, height: int = 900):
    """A headless Chromium WebDriver with the browser log enabled (fails the test when missing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = _find(("chromedriver",), "/usr/bin/chromedriver")
    browser = _find(("chromium", "chromium-browser", "google-chrome"), "/usr/bin/chromium")
    if driver_path is None or browser is None:
        pytest.fail(
            f"headless Chromium is needed for the browser tests but was not found "
            f"(chromedriver: {driver_path or 'missing'}, chromium: {browser or 'missing'}); "
            f"install both with `make browser`"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def opened(path):
    """A headless Chromium showing the report at ``path`` once every image has decoded; quit afterwards."""
    driver = chrome_driver()
    try:
        driver.get(path.resolve().as_uri())
        driver.execute_async_script(  # images load lazily: ask for every one now, then wait for them
            "const done = arguments[arguments.length - 1];"
            "document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; });"
            "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(done);"
        )
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    overview = next(s for s in available_sections() if s.key == "overview")
    path = tmp_path_factory.mktemp("browser") / "report.html"
    build_report(fx.subjects(), path, sections=fx.sections(overview), progress=False)
    yield from opened(path)


def test_no_console_errors_and_scripts_stayed_text(page):
    logs = page.get_log("browser")
    assert [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")] == [], logs
    # the hostile names set document.title = 'PWNED' if they ever ran; they are shown as text instead
    assert page.title == f"torchloupe report: {fx.HOSTILE_SUBJECT}, plain"
    assert page.execute_script("return document.querySelectorAll('script').length") == 1


def test_every_image_is_decoded(page):
    sizes = page.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(sizes) >= 10
    assert all(ok and w > 0 and h > 0 for ok, w, h in sizes), sizes


def test_toc_links_resolve_and_headings_present(page):
    missing = page.execute_script(
        "return Array.from(document.querySelectorAll('nav a[href^=\"#\"]'))"
        ".map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id));"
    )
    assert missing == []
    headings = page.execute_script(
        "return Array.from(document.querySelectorAll('section.section h2')).map(h => h.textContent.trim());")
    assert headings == list(fx.SUBJECTS_TITLES)


def test_zoom_opens_and_closes(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    img = page.find_element(By.CSS_SELECTOR, "figure.fig img")
    page.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'}); arguments[0].click();", img)
    box = page.find_element(By.ID, "lightbox")
    assert box.is_displayed()
    assert page.execute_script("return document.querySelector('#lightbox img').src") == img.get_attribute("src")
    assert page.execute_script("return document.body.style.overflow") == "hidden"  # the page stays put
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not box.is_displayed()
    assert page.execute_script("return document.body.style.overflow") == ""
    img.send_keys(Keys.ENTER)  # from the keyboard: the figure takes focus and opens with Enter
    assert box.is_displayed()
    focused = "return document.activeElement.className"
    assert page.execute_script(focused) == "lb-close"  # the focus moves into the dialog ...
    page.switch_to.active_element.send_keys(Keys.TAB)
    assert page.execute_script(focused) == "lb-size"  # ... and stays there: its two buttons, in turn
    page.switch_to.active_element.send_keys(Keys.TAB)
    assert page.execute_script(focused) == "lb-close"
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not box.is_displayed()
    assert page.execute_script("return document.activeElement") == img  # back on the figure it opened
    img.send_keys(Keys.ENTER)
    page.find_element(By.CSS_SELECTOR, "#lightbox .lb-close").click()  # the close button closes it too
    assert not box.is_displayed() and page.execute_script("return document.activeElement") == img
    assert page.get_log("browser") == []


def test_contents_follow_the_reading_position(page):
    # Reading a model's entry marks its section and the model in the sidebar; back at the top, the
    # marks follow (they used to stay on the last section an observer had reported).
    import time

    active = "return Array.from(document.querySelectorAll('nav.toc a.active')).map(a => a.getAttribute('href'))"
    article = page.execute_script(  # the last entry taller than the reading line that can reach the top
        "var max = document.documentElement.scrollHeight - window.innerHeight;"
        "var ok = Array.from(document.querySelectorAll('article.subject')).filter(a =>"
        " a.getBoundingClientRect().top + window.scrollY < max - 50 && a.offsetHeight > window.innerHeight * 0.3);"
        "return ok[ok.length - 1].id")
    section = page.execute_script(f"return document.getElementById('{article}').closest('section').id")
    page.execute_script(f"var r = document.getElementById('{article}').getBoundingClientRect();"
                        "window.scrollTo({top: r.top + window.scrollY, behavior: 'instant'})")
    time.sleep(0.3)  # the marks follow on the next animation frame
    assert sorted(page.execute_script(active)) == sorted([f"#{section}", f"#{article}"])
    page.execute_script("window.scrollTo({top: 0, behavior: 'instant'})")
    time.sleep(0.3)
    first = page.execute_script("return document.querySelector('main section.section').id")
    assert page.execute_script(active) in ([], [f"#{first}"])  # back at the top: at most the first section
    titled = page.execute_script("return Array.from(document.querySelectorAll('nav.toc a[href^=\"#s-\"]'))"
                                 ".every(a => a.title === a.textContent)")
    assert titled  # cut-off entries show their whole name on hover


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``loupe demo --quick`` end to end (trains or loads the cached demo models), then opened in Chromium."""
    import io
    import re
    from contextlib import redirect_stderr, redirect_stdout

    from torchloupe.app.cli import main

    out = tmp_path_factory.mktemp("demo")
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["demo", "--out", str(out), "--quick", "--no-progress"])
    lines = stdout.getvalue().splitlines()
    assert code == 0, stderr.getvalue()
    assert not [ln for ln in lines if ln.startswith("failed:")], lines
    assert "loupe: warning" not in stderr.getvalue(), stderr.getvalue()
    assert any(re.fullmatch(r"prepared shapes: \d+ models? in \d+\.\d\d s", ln) for ln in lines), lines
    assert re.fullmatch(r"demo finished in \d+\.\d s", lines[-1])
    path = out / "report.html"
    assert re.fullmatch(rf"wrote {re.escape(str(path))} \((\d+ KB|\d+\.\d MB)\)", lines[-2]), lines[-2]
    assert path.stat().st_size < 20 * 1024 * 1024
    yield from opened(path)


def test_demo_report_in_browser(demo):
    logs = demo.get_log("browser")
    assert [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")] == [], logs
    sizes = demo.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
    assert sizes and all(ok and w > 0 for ok, w in sizes)
    missing = demo.execute_script(
        "return Array.from(document.querySelectorAll('nav a[href^=\"#\"]'))"
        ".map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id));"
    )
    assert missing == []
    headings = demo.execute_script(
        "return Array.from(document.querySelectorAll('section.section h2')).map(h => h.textContent.trim());")
    assert headings == [s.title for s in available_sections()]
    assert demo.execute_script("return document.querySelectorAll('div.error').length") == 0


# One pass over every figure of the demo report: open it in the lightbox, wait for the image, measure
# it at actual size and fitted to the window, close it with Escape. Resolves to [[on the page, actual
# size, fitted, fitted within the window, focus back on the figure], ...].
_ENLARGE = """
const done = arguments[arguments.length - 1];
document.querySelector(".switcher button[data-pick='all']").click();
const figs = Array.from(document.querySelectorAll("figure.fig img")).filter(i => i.checkVisibility());
const box = document.getElementById("lightbox"), out = [];
const esc = () => document.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape", bubbles: true}));
(async () => {
  for (const img of figs) {
    img.scrollIntoView({block: "center", behavior: "instant"});
    const page = img.getBoundingClientRect().width;
    img.click();
    const big = box.querySelector(".lb-body img");
    await big.decode();
    await new Promise(r => requestAnimationFrame(r));
    const actual = big.getBoundingClientRect().width;
    box.querySelector(".lb-size").click();
    const r = big.getBoundingClientRect();
    const inside = r.width <= innerWidth && r.height <= innerHeight;
    esc();
    out.push([page, actual, r.width, inside, box.hidden && document.activeElement === img]);
  }
  done(out);
})();
"""


def test_demo_figures_enlarge_in_the_lightbox(demo):
    """The lightbox shows a figure at its full resolution: the demo's figures are drawn at twice the
    pixels they show with (reporting/blocks.py), so actual size is larger than on the page; "fit to
    window" keeps it inside the window."""
    demo.set_script_timeout(120)
    got = demo.execute_async_script(_ENLARGE)
    assert len(got) >= 60, len(got)
    larger = [g for g in got if g[1] > 1.3 * g[0]]
    print(f"{len(larger)} of {len(got)} figures show over 1.3x larger in the lightbox than on the page")
    assert len(larger) >= 0.95 * len(got), [g for g in got if g not in larger]
    assert all(g[3] for g in got), [g for g in got if not g[3]]  # fitted: within the window
    assert all(g[4] for g in got)  # Escape closed it and the focus went back to the figure
    assert demo.get_log("browser") == []
