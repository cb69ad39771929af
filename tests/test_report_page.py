"""The report page as a reader uses it, in a real headless Chromium: the summary's links, the model
switcher, collapsing sections, the lightbox dialog, animations, shared scripts, size and length.

Needs /usr/bin/chromium and chromedriver (``make browser``); a missing browser fails, as in
tests/test_browser.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch

from tests import report_fixtures as fx
from tests.test_browser import chrome_driver
from torchloupe.reporting import Figure, Finding, Html, Image, Section, Subject, Text, available_sections, build_report

pytestmark = pytest.mark.browser

# A block script as the graph and token views write theirs: it finds its root through
# document.currentScript and counts its runs there.
COUNTER = ("<div class='counted' data-runs='0'><script>(function(){var r = document.currentScript.parentElement;"
           "r.setAttribute('data-runs', String(+r.getAttribute('data-runs') + 1));})();</script>"
           "<style>.counted{min-height:40px}</style></div>")


def _figure(title: str):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(3, 2), dpi=100)
    ax = fig.add_subplot()
    ax.plot([0, 1, 4, 9])
    ax.set_title(title)
    ax.set_xlabel("step")
    return fig


def gif_bytes() -> bytes:
    """Three frames of different colours (a GIF of identical frames is saved as one frame)."""
    import io

    from PIL import Image as PILImage

    frames = [PILImage.new("RGB", (24, 16), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def findings(subject: Subject, options: dict):
    fig = Figure(_figure(f"curve of {subject.name}"), caption="a curve")
    return [Text("a paragraph"), fig, Finding(f"{subject.name} rises steadily.", fig),
            Image(gif_bytes(), mime="image/gif", caption="three frames")]


def scripted(subject: Subject, options: dict):
    return [Html(COUNTER), Html(COUNTER)]


def filler(subject: Subject, options: dict):
    return [Figure(_figure(f"filler {i}"), caption=f"filler {i}") for i in range(3)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    overview = next(s for s in available_sections() if s.key == "overview")
    architecture = next(s for s in available_sections() if s.key == "architecture")
    secs = [overview, architecture,
            Section("findings", "Findings", "A figure and what to conclude from it.", 30, findings),
            Section("filler", "Filler", "Room between the sections.", 40, filler),
            Section("scripted", "Scripted", "Two blocks with the same script.", 50, scripted)]
    path = tmp_path_factory.mktemp("page") / "report.html"
    subjects = fx.subjects()
    subjects[0].name = "first"  # plain names: the hostile ones are tested in test_report.py
    build_report(subjects, path, sections=secs, progress=False)
    return path


@pytest.fixture(scope="module")
def page(report):
    driver = chrome_driver(1400, 900)
    try:
        driver.get(report.resolve().as_uri())
        yield driver
    finally:
        driver.quit()


def _shown(driver, selector: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(e => e.checkVisibility()).map(e => e.id || e.getAttribute('data-model'));", selector)


def _settle(driver, limit: float = 5.0) -> None:
    """Wait until a smooth scroll has come to rest (the same position twice in a row)."""
    last, t0 = None, time.perf_counter()
    while time.perf_counter() - t0 < limit:
        time.sleep(0.2)
        y = driver.execute_script("return window.scrollY")
        if y == last:
            return
        last = y


def test_page_is_quiet_offline_and_has_unique_ids(page, report):
    logs = page.get_log("browser")
    assert [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")] == [], logs
    requests = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in requests if not r.startswith("data:")] == []
    ids = page.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    # the graph view's arrow marker (render/graph/svg.py) is one id per graph: left to that view to make unique
    ids = [i for i in ids if i != "tl-arrow"]
    assert len(ids) == len(set(ids))
    html = report.read_text(encoding="utf-8")
    assert "<noscript>" in html and html.index('<script>') < html.index("<body>")  # the page script is in <head>
    first = page.execute_script("return document.querySelector('a[href]').getAttribute('href')")
    assert first == "#content"  # the skip link is the first stop


def test_switcher_shows_one_model_or_all(page):
    from selenium.webdriver.common.by import By

    assert _shown(page, "article.subject") == ["s-overview--first", "s-architecture--first", "s-findings--first",
                                               "s-filler--first", "s-scripted--first"]
    plain = page.find_element(By.CSS_SELECTOR, ".switcher button[data-pick='plain']")
    plain.click()
    assert plain.get_attribute("aria-pressed") == "true"
    assert _shown(page, "article.subject") == ["s-overview--plain", "s-architecture--plain", "s-findings--plain",
                                               "s-filler--plain", "s-scripted--plain"]
    assert _shown(page, ".sum-model") == ["plain"]
    page.find_element(By.CSS_SELECTOR, ".switcher button[data-pick='all']").click()
    assert len(_shown(page, "article.subject")) == 10
    page.find_element(By.CSS_SELECTOR, ".switcher button[data-pick='first']").click()
    assert len(_shown(page, "article.subject")) == 5


def test_sections_collapse_and_open(page):
    from selenium.webdriver.common.by import By

    summary = page.find_element(By.CSS_SELECTOR, "#s-filler > details > summary")
    page.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", summary)
    high = page.execute_script("return document.getElementById('s-filler').offsetHeight")
    summary.click()
    assert page.execute_script("return document.querySelector('#s-filler > details').open") is False
    low = page.execute_script("return document.getElementById('s-filler').offsetHeight")
    assert low < 80 < high
    assert "s-filler--first" not in _shown(page, "article.subject")
    summary.click()
    assert "s-filler--first" in _shown(page, "article.subject")


def test_summary_links_land_on_their_figures(page):
    hrefs = page.execute_script("return Array.from(document.querySelectorAll('.summary a')).map(a => a.getAttribute('href'))")
    # one finding from the overview (its cards), two from the architecture (its table and graph) and one
    # from the findings section (its figure), per model
    assert [h for h in hrefs if "architecture" not in h] == [
        "#fig-overview--first-1", "#fig-findings--first-1", "#fig-overview--plain-1", "#fig-findings--plain-1"]
    assert [h.split("--")[1].rsplit("-", 1)[0] for h in hrefs if "architecture" in h] == ["first"] * 2 + ["plain"] * 2
    page.execute_script("document.querySelector('.switcher button[data-pick=\"all\"]').click()")
    for href in hrefs:
        page.execute_script("window.scrollTo(0, 0); document.querySelector(`.summary a[href='${arguments[0]}']`).click()",
                            href)
        _settle(page)  # smooth scrolling
        top, height, visible = page.execute_script(
            "const e = document.getElementById(arguments[0]); const r = e.getBoundingClientRect();"
            "return [r.top, r.height, e.getClientRects().length > 0]", href[1:])
        assert visible and height > 20 and 0 <= top < 900 - 20, (href, top)
    # a link to a model the switcher hides shows that model first
    page.execute_script("document.querySelector('.switcher button[data-pick=\"first\"]').click();"
                        "document.querySelector('.sum-model[data-model=\"plain\"] a').click()")
    assert page.execute_script("return document.documentElement.getAttribute('data-show')") == "plain"
    assert page.execute_script("return document.getElementById('fig-overview--plain-1').getClientRects().length") > 0
    page.execute_script("document.querySelector('.switcher button[data-pick=\"first\"]').click()")
    texts = page.execute_script("return Array.from(document.querySelectorAll('#s-findings--first .conclude li'))"
                                ".map(l => l.textContent)")
    assert texts == ["first rises steadily. see the figure"]


def test_lightbox_is_a_dialog_with_focus_trap_and_full_size(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    img = page.find_element(By.CSS_SELECTOR, "#fig-findings--first-1 img")
    page.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", img)
    img.send_keys(Keys.ENTER)
    box = page.find_element(By.ID, "lightbox")
    assert box.is_displayed() and box.get_attribute("role") == "dialog" and box.get_attribute("aria-modal") == "true"
    active = "return document.activeElement.className"
    assert page.execute_script(active) == "lb-close"
    for _ in range(3):  # Tab stays inside the dialog
        page.switch_to.active_element.send_keys(Keys.TAB)
        assert page.execute_script("return document.getElementById('lightbox').contains(document.activeElement)")
    big = page.execute_script("return [document.querySelector('#lightbox img').naturalWidth, arguments[0].naturalWidth,"
                              " arguments[0].getBoundingClientRect().width]", img)
    assert big == [600, 600, 300]  # the page's pixels: the figure drawn at twice the size it shows at
    shown = "return document.querySelector('#lightbox img').getBoundingClientRect().width"
    assert page.execute_script(shown) == 600  # at actual size: every pixel, twice as large as on the page
    size = page.find_element(By.CSS_SELECTOR, "#lightbox .lb-size")
    assert (size.text, size.get_attribute("aria-pressed")) == ("Fit to window", "false")
    size.click()  # fit to the window: this one fits whole already
    assert page.execute_script(shown) == 600 and size.get_attribute("aria-pressed") == "true"
    assert page.execute_script("return document.querySelector('#lightbox .lb-cap').textContent") == "a curve"
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert not box.is_displayed()
    assert page.execute_script("return document.activeElement === arguments[0]", img)  # focus back on the figure
    img.click()
    page.find_element(By.CSS_SELECTOR, "#lightbox .lb-close").click()
    assert not box.is_displayed()


def test_animation_is_still_until_played(page):
    from selenium.webdriver.common.by import By

    fig = page.find_element(By.CSS_SELECTOR, "#s-findings--first figure:has(.play)")
    img, button = fig.find_element(By.TAG_NAME, "img"), fig.find_element(By.CSS_SELECTOR, ".play")
    still = img.get_attribute("src")
    assert still.startswith("data:image/") and not still.startswith("data:image/gif")
    page.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", button)
    button.click()
    # the animation plays as animated WebP (lossless, a fifth of the GIF's bytes on the demo)
    assert img.get_attribute("src").startswith("data:image/webp") and button.get_attribute("aria-pressed") == "true"
    assert img.get_attribute("src") != still
    button.click()
    assert img.get_attribute("src") == still and button.get_attribute("aria-pressed") == "false"


def test_block_scripts_once_in_the_file_run_once_per_block(page, report):
    html = report.read_text(encoding="utf-8")
    assert html.count("r.setAttribute('data-runs'") == 1 and html.count(".counted{min-height:40px}") == 1
    page.execute_script("document.querySelector('.switcher button[data-pick=\"all\"]').click();"
                        "document.getElementById('s-scripted').scrollIntoView()")
    time.sleep(0.3)
    runs = page.execute_script("return Array.from(document.querySelectorAll('.counted')).map(e => e.getAttribute('data-runs'))")
    assert runs == ["1", "1", "1", "1"]
    assert page.execute_script("return getComputedStyle(document.querySelector('.counted')).minHeight") == "40px"


def test_small_report_size_and_length(report, tmp_path):
    assert report.stat().st_size < 160_000
    driver = chrome_driver(1400, 900)
    try:
        driver.get(report.resolve().as_uri())
        screens = driver.execute_script("return document.documentElement.scrollHeight / window.innerHeight")
        # figures side by side: the three small filler figures share one row at 1400 px
        tops = driver.execute_script("return Array.from(document.querySelectorAll('#s-filler--first figure'))"
                                     ".map(f => Math.round(f.getBoundingClientRect().top))")
    finally:
        driver.quit()
    assert len(set(tops)) == 1, tops
    assert screens < 4.5, screens


def test_images_are_webp_and_decoded_lazily(report):
    html = report.read_text(encoding="utf-8")
    imgs = re.findall(r"<img [^>]*>", html)
    assert imgs and all('loading="lazy"' in i and 'decoding="async"' in i for i in imgs)
    imgs = re.findall(r"<figure[^>]*>\s*<img [^>]*>", html)
    kinds = {re.search(r'src="data:(image/[a-z+]+)', i).group(1) for i in imgs}
    assert kinds == {"image/webp"}, kinds
    # the alt text says what the figure shows, not the caption again
    alts = re.findall(r'alt="([^"]*)"', html)
    assert "1 line plot (curve of first), axes: step" in alts


def test_print_has_whole_graphs_and_no_controls(report):
    driver = chrome_driver(900, 1200)
    try:
        driver.get(report.resolve().as_uri())
        driver.execute_script("document.getElementById('s-architecture--first').scrollIntoView({behavior: 'instant'})")
        driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        assert driver.execute_script("return document.querySelector('#s-architecture--first .tl-count').textContent")
        box = "return document.querySelector('#s-architecture--first .tl-pane svg').getAttribute('viewBox')"
        before = driver.execute_script(box)
        driver.execute_script("window.dispatchEvent(new Event('beforeprint'))")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        hidden = driver.execute_script(
            "return ['.switcher', 'nav.toc', '.tl-bar', '.tl-tree', '.tl-details', '#build-times']"
            ".map(s => getComputedStyle(document.querySelector(s)).display)")
        assert hidden == ["none"] * 6
        outside = driver.execute_script(  # every box of the graph lies inside its pane: nothing clipped
            "const pane = document.querySelector('#s-architecture--first .tl-pane').getBoundingClientRect();"
            "const boxes = Array.from(document.querySelectorAll('#s-architecture--first .tl-pane [data-key]'));"
            "return [boxes.length, boxes.map(b => b.getBoundingClientRect()).filter(r =>"
            " r.top < pane.top - 1 || r.bottom > pane.bottom + 1 || r.left < pane.left - 1 || r.right > pane.right + 1).length]")
        assert outside[0] >= 3 and outside[1] == 0, outside
        driver.execute_script("window.dispatchEvent(new Event('afterprint'))")
        assert driver.execute_script(box) == before  # the screen view is back as it was
    finally:
        driver.quit()


def test_contents_mark_a_short_last_section_when_its_link_is_followed(page):
    # The last section is too short to reach the reading line: following its link marks it anyway.
    page.execute_script("document.querySelector('.switcher button[data-pick=\"first\"]').click();"
                        "window.scrollTo({top: 0, behavior: 'instant'});"
                        "document.querySelector('nav.toc a[href=\"#s-scripted\"]').click()")
    _settle(page)
    active = page.execute_script("return Array.from(document.querySelectorAll('nav.toc a.active')).map(a => a.getAttribute('href'))")
    assert active == ["#s-scripted", "#s-scripted--first"]


def test_text_contrast_is_wcag_aa():
    # The colours the page writes small text in, against the backgrounds they sit on (WCAG 2 formula).
    css = (Path(__file__).parents[1] / "src/torchloupe/reporting/templates/report.css").read_text()
    var = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css))

    def lum(h):
        c = [int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    def ratio(a, b):
        hi, lo = sorted((lum(a), lum(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    tree = re.search(r"\.tl-tree \.tl-item span \{ color: (#[0-9a-f]{6})", css).group(1)
    pairs = {"muted on page": (var["muted"], var["bg"]), "muted on card": (var["muted"], var["card"]),
             "faint on card": (var["faint"], var["card"]), "tree label": (tree, "#ffffff"),
             "link on soft accent": (var["accent"], var["accent-soft"])}
    low = {k: round(ratio(*v), 2) for k, v in pairs.items() if ratio(*v) < 4.5}
    assert low == {}
