"""The token-to-token view inside a real report in headless Chromium: hover and selects work, tokens stay text."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.test_browser import chrome_driver
from torchloupe.reporting import build_report
from torchloupe.reporting.base import Subject

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=\"document.title='PWNED'\">"


def test_token_view_hover_and_layer_choice(tmp_path):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False).eval()
    tokens = ["a", HOSTILE, "c", "d", "e"]
    subject = Subject("enc", enc, torch.randn(1, 5, 8), extras={"tokens": [tokens]})
    path = tmp_path / "report.html"
    build_report([subject], path, sections=["attention"], progress=False)
    driver = chrome_driver()
    try:
        driver.get(path.resolve().as_uri())
        title = driver.title
        toks = driver.find_elements("css selector", ".tl-token-view .tl-tok")
        assert [t.text for t in toks] == tokens  # the hostile token is shown as text
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", toks[2])
        outlines = [t.value_of_css_property("outline-style") for t in toks]
        assert outlines == ["none", "none", "solid", "none", "none"]
        before = [t.get_attribute("title") for t in toks]
        driver.execute_script(
            "var s = document.querySelector('.tl-token-view .tl-layer'); s.value = '1';"
            "s.dispatchEvent(new Event('change'));"
        )
        after = [t.get_attribute("title") for t in toks]
        assert before != after and all(t.startswith("weight ") for t in after)
        logs = driver.get_log("browser")
        assert [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")] == [], logs
        assert driver.title == title and "PWNED" not in driver.title
    finally:
        driver.quit()


def test_two_token_views_made_in_two_worker_processes_each_work(tmp_path):
    # Sections run in forked workers: two models' views must not share an element id (the
    # second view used to drive the first and stay dead itself).
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
        driver.get(path.resolve().as_uri())
        # the report shows one model at a time: show both
        driver.execute_script("document.querySelector('.switcher button[data-pick=\"all\"]').click()")
        views = driver.find_elements("css selector", ".tl-token-view")
        assert len(views) == 2
        for view in views:  # a view's script runs when the view comes near the window
            driver.execute_script("arguments[0].scrollIntoView({behavior: 'instant'})", view)
            driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
            toks = view.find_elements("css selector", ".tl-tok")
            driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", toks[3])
            assert [t.value_of_css_property("outline-style") for t in toks] == ["none", "none", "none", "solid"]
        logs = driver.get_log("browser")
        assert [e for e in logs if e.get("level") in ("SEVERE", "ERROR", "WARNING")] == [], logs
    finally:
        driver.quit()
