"""The interactive graph in headless Chromium: no console errors; clicking a container collapses it.

Needs /usr/bin/chromium and chromedriver (``make browser``); when they are missing these tests fail.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from tests.test_structure import Stack
from torchloupe.structure import trace

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    assert shutil.which(chromedriver), "chromedriver is missing: run `make browser`"
    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    yield d
    d.quit()


def _open(driver, path):
    from selenium.webdriver.common.by import By

    driver.get(path.as_uri())
    root = driver.find_element(By.CSS_SELECTOR, ".tl-root")
    assert root.get_attribute("data-ready") == "1"  # the inline script ran to its end
    return driver.find_element(By.CSS_SELECTOR, ".tl-pane")


def _errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_click_container_collapses_and_expands(driver, tmp_path):
    from selenium.webdriver.common.by import By

    torch.manual_seed(0)
    g = trace(torchvision.models.resnet18(weights=None), torch.rand(1, 3, 32, 32))
    path = tmp_path / "resnet.html"
    g.to_html(path)
    pane = _open(driver, path)
    assert int(pane.get_attribute("data-boxes")) == 71
    assert len(driver.find_elements(By.CSS_SELECTOR, ".tl-pane [data-key]")) == 71
    # click the frame label of the container layer1: its 14 nodes become one box
    driver.find_element(By.CSS_SELECTOR, 'text.fl[data-frame="layer1"]').click()
    assert int(pane.get_attribute("data-boxes")) == 71 - 14 + 1
    box = driver.find_element(By.CSS_SELECTOR, '[data-key="c:layer1"]')
    assert "layer1" in box.text
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-key="n5"]')  # layer1.0.conv1 is inside now
    # the module tree shows it closed; clicking the box opens it again
    assert driver.find_element(By.CSS_SELECTOR, '[data-tree="layer1"]').text.startswith("▸")
    box.click()
    assert int(pane.get_attribute("data-boxes")) == 71
    # collapse from the tree too
    driver.find_element(By.CSS_SELECTOR, '[data-tree="layer4"]').click()
    assert int(pane.get_attribute("data-boxes")) == 71 - 16 + 1
    # node details and search
    driver.find_element(By.CSS_SELECTOR, '[data-key="n1"]').click()
    details = driver.find_element(By.CSS_SELECTOR, ".tl-details").text
    assert "conv1" in details and "Conv2d" in details and "9,408" in details
    driver.find_element(By.CSS_SELECTOR, ".tl-search").send_keys("downsample")
    assert driver.find_element(By.CSS_SELECTOR, ".tl-hits").text == "5 matches"  # 2 in layer2, 2 in layer3, collapsed layer4: 1 box
    assert _errors(driver) == []


def test_folded_repeats_unfold_on_click(driver, tmp_path):
    from selenium.webdriver.common.by import By

    g = trace(Stack(n=6), torch.rand(2, 5))
    path = tmp_path / "stack.html"
    g.to_html(path, depth=1)
    pane = _open(driver, path)
    assert int(pane.get_attribute("data-boxes")) == 5
    folded = driver.find_element(By.CSS_SELECTOR, '[data-key="c:blocks.0"]')
    assert "×6" in folded.text
    folded.click()
    assert int(pane.get_attribute("data-boxes")) == 10
    assert _errors(driver) == []
