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
    driver.find_element(By.CSS_SELECTOR, ".switcher button[data-pick='all']").click()  # both models, not the first only
    roots = driver.find_elements(By.CSS_SELECTOR, ".tl-root")
    assert [r.get_attribute("data-ready") for r in roots] == ["1", "1"]  # one graph per subject, both live
    pane = roots[0].find_element(By.CSS_SELECTOR, ".tl-pane")
    assert int(pane.get_attribute("data-boxes")) == 11
    label = roots[0].find_element(By.CSS_SELECTOR, 'text.fl[data-frame="features"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", label)  # below the summary
    label.click()
    assert int(pane.get_attribute("data-boxes")) == 11 - 6 + 1
    # the three identical blocks of the stack: drawn once (x, stem, Linear, GELU, out, output), in a frame marked ×3
    assert int(roots[1].find_element(By.CSS_SELECTOR, ".tl-pane").get_attribute("data-boxes")) == 6
    assert roots[1].find_element(By.CSS_SELECTOR, 'text.fl[data-frame="blocks.0"]').text == "blocks.0 … 2 ×3"
    assert driver.page_source.count("function scan()") == 1  # one copy of the script for both graphs
    assert _errors(driver) == []


def _scale(pane):
    return float(pane.get_attribute("data-scale"))


def test_wheel_scrolls_the_page_ctrl_wheel_zooms_and_search_brings_the_match_into_view(driver, resnet_html):
    from selenium.webdriver.common.by import By

    pane = _open(driver, resnet_html)
    wheel = ("var p = document.querySelector('.tl-pane'), r = p.getBoundingClientRect();"
             "return p.dispatchEvent(new WheelEvent('wheel', {deltaY: -200, clientX: r.left + 50, clientY: r.top + 50,"
             " ctrlKey: arguments[0], bubbles: true, cancelable: true}));")
    before = _scale(pane)
    assert driver.execute_script(wheel, False) is True  # not prevented: the pane or the page scrolls on
    assert _scale(pane) == before
    assert driver.execute_script(wheel, True) is False and _scale(pane) > before  # ctrl + wheel zooms in
    driver.refresh()
    pane = driver.find_element(By.CSS_SELECTOR, ".tl-pane")
    driver.find_element(By.CSS_SELECTOR, ".tl-search").send_keys("layer4.1.conv2")
    hit = driver.find_element(By.CSS_SELECTOR, ".tl-pane .hit")
    box, area = hit.rect, pane.rect
    assert area["y"] <= box["y"] and box["y"] + box["height"] <= area["y"] + area["height"]  # scrolled into view
    assert _errors(driver) == []


def test_fit_shows_the_whole_graph_and_details_do_not_outlive_their_box(driver, resnet_html):
    from selenium.webdriver.common.by import By

    pane = _open(driver, resnet_html)
    driver.find_element(By.CSS_SELECTOR, ".tl-fit").click()
    d, p = driver.find_element(By.CSS_SELECTOR, ".tl-pane svg").rect, pane.rect
    assert d["width"] <= p["width"] + 1  # as wide as the pane at most
    # all of it in the pane, or (resnet18's 12 top-level boxes are taller than the pane at a readable
    # scale) its top level, scrolled with the minimap
    boxes = int(pane.get_attribute("data-boxes"))
    assert d["height"] <= p["height"] + 1 or (boxes <= 14 and driver.find_element(By.CSS_SELECTOR, ".tl-mini").is_displayed())
    assert _scale(pane) >= 0.92  # and readable: 11 px text at 92 % shows at 10 px
    driver.find_element(By.CSS_SELECTOR, ".tl-reset").click()
    assert _scale(pane) == 1.0
    driver.refresh()  # back to the first view
    pane = driver.find_element(By.CSS_SELECTOR, ".tl-pane")
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


def _bert():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32)
    return transformers.BertModel(cfg).eval()


@pytest.fixture(scope="module")
def big_graphs(tmp_path_factory):
    """Fully expanded EfficientNet-Lite0 (214 boxes, 5,000 x 11,000 px) and a 6-layer BERT."""
    from torchloupe.demo.imagenet_data import efficientnet_lite0
    from torchloupe.render.graph.layout import max_depth

    out = tmp_path_factory.mktemp("big")
    eff = trace(efficientnet_lite0().eval(), torch.rand(1, 3, 224, 224))
    eff.to_html(out / "eff.html", depth=max_depth(eff))  # no container deep enough to collapse
    bert = trace(_bert(), torch.randint(0, 100, (1, 8)))
    bert.to_html(out / "bert.html", depth=max_depth(bert))
    return out / "eff.html", out / "bert.html"


def test_bert_layers_fold_into_one_block_times_six(driver, big_graphs):
    from selenium.webdriver.common.by import By

    pane = _open(driver, big_graphs[1])
    label = driver.find_element(By.CSS_SELECTOR, 'text.fl[data-frame="encoder.layer.0"]').text
    assert label == "encoder.layer.0 … 5 ×6"  # expanded: the first layer drawn once, in a frame marked ×6
    shown = {t.text for t in driver.find_elements(By.CSS_SELECTOR, ".tl-pane text.t")}
    assert "encoder.layer.0.attention.self.query" in shown and "encoder.layer.1.attention.self.query" not in shown
    folded = int(pane.get_attribute("data-boxes"))
    driver.find_element(By.CSS_SELECTOR, ".tl-fold").click()  # unfold: all six layers drawn
    assert folded == 42 and int(pane.get_attribute("data-boxes")) == 42 + 5 * 23 == 157  # 23 nodes a layer; all 157 nodes
    assert _errors(driver) == []


@pytest.mark.parametrize("which", [0, 1], ids=["efficientnet-lite0", "bert"])
def test_fit_on_fully_expanded_real_models_stays_readable(driver, big_graphs, which):
    from selenium.webdriver.common.by import By

    pane = _open(driver, big_graphs[which])
    before = int(pane.get_attribute("data-boxes"))
    driver.find_element(By.CSS_SELECTOR, ".tl-fit").click()
    scale, after = _scale(pane), int(pane.get_attribute("data-boxes"))
    assert scale >= 0.92, scale  # not 6 %: the fit folds and collapses instead, and scrolls what still does not fit
    assert after < before
    # frames only for containers that ran: BERT's ModuleList "encoder.layer" is never called
    frames = [f.get_attribute("data-frame") for f in driver.find_elements(By.CSS_SELECTOR, ".tl-pane rect.frame")]
    assert "encoder.layer" not in frames and "_blocks" not in frames
    # the boxes' text as displayed, at least 10 px (titles 12 px, shapes 11 px at scale 1)
    for cls in ("t", "s"):
        size = driver.execute_script(f"return parseFloat(getComputedStyle(document.querySelector('.tl-pane text.{cls}'))"
                                     f".fontSize) * arguments[0]", scale)
        assert size >= 10, (cls, size)
    # the user opens more from there: a collapsed block opens on click
    box = driver.find_element(By.CSS_SELECTOR, '.tl-pane [data-key^="c:"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.click()
    assert int(pane.get_attribute("data-boxes")) > after
    assert _errors(driver) == []


def test_minimap_pans_and_keyboard_selects(driver, big_graphs):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    pane = _open(driver, big_graphs[1])
    mini = driver.find_element(By.CSS_SELECTOR, ".tl-mini")
    assert mini.is_displayed()  # the drawing is taller than its pane
    assert driver.execute_script("return arguments[0].scrollTop", pane) == 0
    ActionChains(driver).move_to_element_with_offset(mini, 0, mini.rect["height"] // 2 - 3).click().perform()
    top = driver.execute_script("return arguments[0].scrollTop", pane)
    assert top > 100  # clicking low on the minimap moved the view down
    view = driver.find_element(By.CSS_SELECTOR, ".tl-mini .tl-mini-view")
    assert float(view.get_attribute("y")) > 0
    # keyboard: Tab reaches a box; Enter selects it (selected state, details); arrow keys move on
    driver.execute_script("document.querySelector('.tl-reset').focus()")
    for _ in range(40):  # Tab on from the toolbar: past the frame labels to the first box
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("data-key"):
            break
    assert driver.switch_to.active_element.get_attribute("data-key") == "n0"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    sel = driver.find_elements(By.CSS_SELECTOR, ".tl-pane .box.sel")
    assert [g.get_attribute("data-key") for g in sel] == ["n0"] and sel[0].get_attribute("aria-pressed") == "true"
    assert "input_ids" in driver.find_element(By.CSS_SELECTOR, ".tl-details").text
    stroke = driver.execute_script("return getComputedStyle(document.querySelector('.box.sel rect.body')).strokeWidth")
    assert float(stroke.rstrip("px")) >= 3
    driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert driver.switch_to.active_element.get_attribute("data-key") not in (None, "n0")
    # Tab order: the boxes are focusable
    assert driver.execute_script("return document.querySelectorAll('.tl-pane [data-key][tabindex=\"0\"]').length") == \
        int(pane.get_attribute("data-boxes"))
    assert _errors(driver) == []


def test_one_script_for_many_graphs_and_small_models_get_small_panes(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from torchloupe.render.graph.html import assets, fragment

    small = trace(tiny_cnn(), torch.rand(1, 3, 16, 16))
    stack = trace(Stack(n=6), torch.rand(2, 5))
    css, js = assets()
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{css}</style></head><body>"
            f"{fragment(small)}{fragment(stack, depth=1)}<script>{js}</script></body></html>")
    assert page.count(js) == 1
    path = tmp_path / "two.html"
    path.write_text(page)
    _open(driver, path)
    roots = driver.find_elements(By.CSS_SELECTOR, ".tl-root")
    assert [r.get_attribute("data-ready") for r in roots] == ["1", "1"]
    panes = driver.find_elements(By.CSS_SELECTOR, ".tl-pane")
    assert [p.get_attribute("data-boxes") for p in panes] == ["11", "5"]
    assert panes[1].rect["height"] < 450  # five boxes: a small pane, not 72 % of the window
    assert panes[0].rect["width"] > 1300  # as wide as the page
    legend = roots[0].find_element(By.CSS_SELECTOR, ".tl-legend").text  # the marks this CNN has, no more
    assert "module call" in legend and "×k" in legend and "collapsed block" in legend
    assert "in-place write" in legend  # its ReLUs write into their input
    assert "fusion" not in legend and "parameter read" not in legend and "residual" not in legend
    assert _errors(driver) == []


def test_print_shows_the_whole_drawing_without_controls(driver, resnet_html):
    from selenium.webdriver.common.by import By

    _open(driver, resnet_html)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        svg = driver.find_element(By.CSS_SELECTOR, ".tl-pane svg")
        pane = driver.find_element(By.CSS_SELECTOR, ".tl-pane")
        assert not driver.find_element(By.CSS_SELECTOR, ".tl-fit").is_displayed()
        assert not driver.find_element(By.CSS_SELECTOR, ".tl-side").is_displayed()
        assert pane.rect["height"] >= svg.rect["height"] - 1  # nothing clipped
        assert svg.rect["width"] <= pane.rect["width"] + 1
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_without_scripts_the_static_drawing_shows_and_no_dead_controls(resnet_html):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from tests.test_browser import CHROME_FLAGS, _find

    opts = webdriver.ChromeOptions()
    opts.binary_location = _find(("chromium", "chromium-browser", "google-chrome"), "/usr/bin/chromium")
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument("--window-size=800,900")
    opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    d = webdriver.Chrome(service=Service(_find(("chromedriver",), "/usr/bin/chromedriver")), options=opts)
    try:
        d.get(resnet_html.as_uri())
        root = d.find_element(By.CSS_SELECTOR, ".tl-root")
        assert root.get_attribute("data-ready") is None  # the script did not run
        assert len(d.find_elements(By.CSS_SELECTOR, ".tl-pane svg g.box")) == 71  # the Python drawing
        for sel in (".tl-fit", ".tl-search", ".tl-fold", ".tl-side"):
            assert not d.find_element(By.CSS_SELECTOR, sel).is_displayed(), sel  # no control that does nothing
        assert d.find_element(By.CSS_SELECTOR, ".tl-legend").is_displayed()
        pane = d.find_element(By.CSS_SELECTOR, ".tl-pane")
        assert d.execute_script("return getComputedStyle(arguments[0]).overflow", pane) == "auto"  # it scrolls
        assert pane.rect["width"] <= 800
    finally:
        d.quit()
