"""The token-to-token view and the layer picker inside a real report in headless Chromium: pin,
sample, direction, keyboard; tokens stay text; one shared script for several views."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.test_browser import chrome_driver
from torchloupe import attention
from torchloupe.reporting import build_report
from torchloupe.reporting.base import Subject

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=\"document.title='PWNED'\">"


def _errors(driver):
    logs = driver.get_log("browser")
    return [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")]


def _open(driver, path):
    driver.get(path.resolve().as_uri())
    driver.execute_script("document.documentElement.style.scrollBehavior = 'auto'")  # selenium scrolls at once


def _cells(driver):
    """The per-head table: {row name: [weights as shown]}."""
    rows = driver.find_elements("css selector", ".tl-token-view table.tl-heads tr")
    out = {}
    for r in rows[1:]:
        name = r.find_element("css selector", "th").text
        out[name] = [float(td.get_attribute("title")) for td in r.find_elements("css selector", "td")]
    return out


def test_token_view_pin_sample_direction_keyboard(tmp_path):
    from selenium.webdriver.common.keys import Keys

    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 3, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 8)
    tokens = [["a", HOSTILE, "c", "d", "e"], ["v", "w", "x", "y", "z"]]
    subject = Subject("enc", enc, x, extras={"tokens": tokens})
    path = tmp_path / "report.html"
    build_report([subject], path, sections=["attention"], progress=False)
    maps = attention.capture(enc, x)
    names = list(maps)
    driver = chrome_driver()
    try:
        _open(driver, path)
        title = driver.title
        toks = driver.find_elements("css selector", ".tl-token-view .tl-tok")
        assert [t.text for t in toks] == tokens[0]  # the hostile token is shown as text
        # click pins: the table shows where token 2 looks, per head, as the model computed it
        toks[2].click()
        assert toks[2].get_attribute("aria-pressed") == "true"
        cells = _cells(driver)
        assert list(cells) == ["head 0", "head 1", "mean of heads"]  # heads side by side
        for h in range(2):
            want = maps[names[0]][0, h, 2].tolist()
            assert cells[f"head {h}"] == pytest.approx(want, abs=6e-4)
        # hovering elsewhere does not move a pinned token
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))", toks[4])
        assert _cells(driver)["head 0"] == cells["head 0"]
        # direction "to": the column of token 2 (which tokens look at it)
        driver.execute_script("var s = document.querySelector('.tl-token-view .tl-dir'); s.value = 'to';"
                              "s.dispatchEvent(new Event('change'));")
        assert _cells(driver)["head 1"] == pytest.approx(maps[names[0]][0, 1, :, 2].tolist(), abs=6e-4)
        # another layer
        driver.execute_script("var s = document.querySelector('.tl-token-view .tl-layer'); s.value = '2';"
                              "s.dispatchEvent(new Event('change'));")
        assert _cells(driver)["head 0"] == pytest.approx(maps[names[2]][0, 0, :, 2].tolist(), abs=6e-4)
        # the key states the top of the shading: the largest weight shown
        shown = max(max(v) for v in _cells(driver).values())
        assert float(driver.find_element("css selector", ".tl-key-max").text) == pytest.approx(shown, abs=6e-3)
        # sample 1: its own tokens and weights
        driver.execute_script("var s = document.querySelector('.tl-token-view .tl-sample'); s.value = '1';"
                              "s.dispatchEvent(new Event('change'));")
        toks = driver.find_elements("css selector", ".tl-token-view .tl-tok")
        assert [t.text for t in toks] == tokens[1]
        assert _cells(driver)["head 0"] == pytest.approx(maps[names[2]][1, 0, :, 2].tolist(), abs=6e-4)
        # keyboard: Tab reaches a token, arrows move, Enter pins
        driver.execute_script("document.querySelector('.tl-token-view .tl-dir').focus()")
        driver.switch_to.active_element.send_keys(Keys.TAB)  # the next stop after the selectors: the first token
        active = driver.switch_to.active_element
        assert active.get_attribute("data-i") == "0"
        active.send_keys(Keys.ARROW_RIGHT)
        active = driver.switch_to.active_element
        assert active.get_attribute("data-i") == "1"
        active.send_keys(Keys.ENTER)
        assert [t.get_attribute("aria-pressed") for t in toks] == ["false", "true", "false", "false", "false"]
        active.send_keys(Keys.ENTER)  # again: unpinned
        assert all(t.get_attribute("aria-pressed") == "false" for t in toks)
        assert int(driver.execute_script("return document.querySelectorAll('.tl-token-view .tl-tok[tabindex=\"0\"]').length")) == 5
        # the layer picker above: one layer's figure at a time, the arrows step through them
        figs = driver.find_elements("css selector", ".tl-layer-picker figure")
        assert [f.is_displayed() for f in figs] == [True, False, False]
        driver.find_element("css selector", ".tl-layer-picker .tl-next").click()
        assert [f.is_displayed() for f in figs] == [False, True, False]
        assert driver.page_source.count("torchloupeTokens = {") == 1
        assert _errors(driver) == []
        assert driver.title == title and "PWNED" not in driver.title
    finally:
        driver.quit()


def test_two_token_views_made_in_two_worker_processes_each_work(tmp_path):
    # Sections run in forked workers: two models' views must not share an element id or a script.
    torch.manual_seed(0)
    subjects = []
    for name in ("first", "second"):
        enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1,
                                    enable_nested_tensor=False).eval()
        subjects.append(Subject(name, enc, torch.randn(1, 4, 8), extras={"tokens": [list("abcd")]}))
    path = tmp_path / "report.html"
    build_report(subjects, path, sections=["attention"], progress=False, jobs=2)
    driver = chrome_driver()
    try:
        _open(driver, path)
        # the report shows one model at a time: show both
        driver.execute_script("document.querySelector('.switcher button[data-pick=\"all\"]').click()")
        views = driver.find_elements("css selector", ".tl-token-view")
        assert len(views) == 2 and [v.get_attribute("data-ready") for v in views] == ["1", "1"]
        for view in views:
            driver.execute_script("arguments[0].scrollIntoView({behavior: 'instant'})", view)
            toks = view.find_elements("css selector", ".tl-tok")
            toks[3].click()
            assert [t.get_attribute("aria-pressed") for t in toks] == ["false", "false", "false", "true"]
        # each view pinned its own token: the first view's state did not move with the second's
        first = views[0].find_elements("css selector", ".tl-tok")
        assert first[3].get_attribute("aria-pressed") == "true"
        assert ' id="' not in "".join(v.get_attribute("outerHTML") for v in views)
        assert _errors(driver) == []
    finally:
        driver.quit()
