"""The interactive graph in headless Chromium: no console errors; clicking a container collapses it.

Needs /usr/bin/chromium and chromedriver (``make browser``); when they are missing these tests fail.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.helpers import tiny_cnn
from tests.test_browser import chrome_driver
from tests.test_structure import Stack
from torchloupe.structure import trace

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def driver():
    d = chrome_driver(1400, 1000)  # fails the test when Chromium or chromedriver is missing
    yield d
    d.quit()


@pytest.fixture(scope="module")
def resnet_html(tmp_path_factory):
    """The interactive graph of a random-init resnet18 (71 boxes at the default depth)."""
    torch.manual_seed(0)
    g = trace(torchvision.models.resnet18(weights=None), torch.rand(1, 3, 32, 32))
    path = tmp_path_factory.mktemp("graph") / "resnet.html"
    g.to_html(path)
    return path


def _open(driver, path):
    from selenium.webdriver.common.by import By

    driver.get(path.as_uri())
    driver.get_log("browser")  # start each page with an empty log
    driver.refresh()
    root = driver.find_element(By.CSS_SELECTOR, ".tl-root")
    assert root.get_attribute("data-ready") == "1"  # the inline script ran to its end
    return driver.find_element(By.CSS_SELECTOR, ".tl-pane")


def _errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_click_container_collapses_and_expands(driver, resnet_html):
    from selenium.webdriver.common.by import By

    pane = _open(driver, resnet_html)
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


def test_report_architecture_section_is_interactive(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from torchloupe.reporting import Subject, build_report

    path = tmp_path / "report.html"
    subjects = [Subject("cnn", tiny_cnn(), torch.rand(2, 3, 16, 16)),
                Subject("stack", Stack(n=3), torch.rand(2, 5))]
    build_report(subjects, path, sections=["architecture"], progress=False)
    driver.get(path.as_uri())
    roots = driver.find_elements(By.CSS_SELECTOR, ".tl-root")
    assert [r.get_attribute("data-ready") for r in roots] == ["1", "1"]  # one graph per subject, both live
    pane = roots[0].find_element(By.CSS_SELECTOR, ".tl-pane")
    assert int(pane.get_attribute("data-boxes")) == 11
    roots[0].find_element(By.CSS_SELECTOR, 'text.fl[data-frame="features"]').click()
    assert int(pane.get_attribute("data-boxes")) == 11 - 6 + 1
    assert int(roots[1].find_element(By.CSS_SELECTOR, ".tl-pane").get_attribute("data-boxes")) == 10
    assert _errors(driver) == []


def _viewport(driver):
    return driver.execute_script("return document.querySelector('.tl-pane g.viewport').getAttribute('transform')")


def _scale(driver):
    return float(_viewport(driver).split("scale(")[1].rstrip(")"))


def test_wheel_scrolls_the_page_ctrl_wheel_zooms_and_search_centres_the_match(driver, resnet_html):
    from selenium.webdriver.common.by import By

    pane = _open(driver, resnet_html)
    wheel = ("var p = document.querySelector('.tl-pane'), r = p.getBoundingClientRect();"
             "return p.dispatchEvent(new WheelEvent('wheel', {deltaY: -200, clientX: r.left + 50, clientY: r.top + 50,"
             " ctrlKey: arguments[0], bubbles: true, cancelable: true}));")
    before = _viewport(driver)
    assert driver.execute_script(wheel, False) is True  # not prevented: the page scrolls on
    assert _viewport(driver) == before
    assert driver.execute_script(wheel, True) is False and _scale(driver) > 1.0  # ctrl + wheel zooms in
    # a fresh page (no re-layout yet): the first match is brought into the middle of the pane
    driver.refresh()
    pane = driver.find_element(By.CSS_SELECTOR, ".tl-pane")
    driver.find_element(By.CSS_SELECTOR, ".tl-search").send_keys("layer4.1.conv2")
    hit = driver.find_element(By.CSS_SELECTOR, ".tl-pane .hit")
    box, area = hit.rect, pane.rect
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert abs(cx - (area["x"] + area["width"] / 2)) < 2 and abs(cy - (area["y"] + area["height"] / 2)) < 2
    assert _errors(driver) == []


def test_fit_shows_the_whole_graph_and_details_do_not_outlive_their_box(driver, resnet_html):
    from selenium.webdriver.common.by import By

    pane = _open(driver, resnet_html)
    drawing = driver.find_element(By.CSS_SELECTOR, ".tl-pane g.viewport")
    assert drawing.rect["width"] <= pane.rect["width"] + 1  # never wider than its pane on load
    driver.find_element(By.CSS_SELECTOR, ".tl-fit").click()
    d, p = drawing.rect, pane.rect
    assert d["x"] >= p["x"] - 1 and d["y"] >= p["y"] - 1
    assert d["x"] + d["width"] <= p["x"] + p["width"] + 1 and d["y"] + d["height"] <= p["y"] + p["height"] + 1
    driver.find_element(By.CSS_SELECTOR, ".tl-reset").click()
    # a box's details, then its container collapsed: the panel no longer describes a box not drawn
    driver.find_element(By.CSS_SELECTOR, '[data-key="n5"]').click()  # layer1.0.conv1
    assert "layer1.0.conv1" in driver.find_element(By.CSS_SELECTOR, ".tl-details").text
    assert driver.find_elements(By.CSS_SELECTOR, '[data-tree="layer1.0"]')
    driver.find_element(By.CSS_SELECTOR, '[data-tree="layer1"]').click()
    assert "layer1.0.conv1" not in driver.find_element(By.CSS_SELECTOR, ".tl-details").text
    # the module list on the left no longer offers the blocks inside the collapsed layer1
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-tree="layer1.0"]')
    assert driver.find_elements(By.CSS_SELECTOR, '[data-tree="layer2.0"]')
    assert _errors(driver) == []
