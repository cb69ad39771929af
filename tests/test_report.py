"""The HTML report builder: structure, escaping, NotApplicable lines, failure isolation, self-containment, size."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest
import torch

import torchloupe as tl
from tests import report_fixtures as fx
from tests.helpers import arm_tripwire, assert_same_state, model_state, tiny_cnn
from torchloupe.errors import UsageError
from torchloupe.reporting import Section, Subject, available_sections, build_report
from torchloupe.reporting.blocks import FIGURE_MAX_WIDTH


class Page(HTMLParser):
    """Tags with attributes, ids, text per element kind: enough to check the report's structure."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: list[str] = []
        self.text: dict[str, list[str]] = {}
        self._stack: list[tuple[str, dict]] = []
        self._buf: dict[int, list[str]] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag not in ("img", "meta", "link", "br", "input"):
            self._stack.append((tag, a))
            self._buf[len(self._stack)] = []

    def handle_endtag(self, tag):
        while self._stack:
            t, a = self._stack.pop()
            text = "".join(self._buf.pop(len(self._stack) + 1, []))
            if self._stack:
                self._buf[len(self._stack)].append(text)
            key = t if not a.get("class") else f"{t}.{a['class'].split()[0]}"
            self.text.setdefault(key, []).append(" ".join(text.split()))
            if t == tag:
                break

    def handle_data(self, data):
        if self._stack:
            self._buf[len(self._stack)].append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def overview() -> Section:
    return next(s for s in available_sections() if s.key == "overview")


@pytest.fixture(scope="module")
def built(tmp_path_factory, overview):
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    subjects = fx.subjects()
    rng = torch.get_rng_state()
    info = build_report(subjects, path, sections=fx.sections(overview), options={"seed": 7}, progress=False)
    assert torch.equal(torch.get_rng_state(), rng), "building the report changed the global RNG"
    html = path.read_text(encoding="utf-8")
    return info, html, Page(html)


def test_structure_title_toc_sections_subjects(built):
    info, html, page = built
    assert html.startswith("<!doctype html>")
    assert page.text["h2"] == list(fx.SUBJECTS_TITLES)
    assert page.text["title"] == ["torchloupe report: net <script>document.title='PWNED'</script>, plain"]
    blurbs = page.text["p.blurb"]
    assert blurbs[0].startswith("The model at a glance") and blurbs[1] == "Every kind of block, with hostile strings."
    # every TOC link points at an element of the page, and every section and subject is linked
    hrefs = [a["href"] for a in page.all("a") if a.get("href", "").startswith("#")]
    assert set(h[1:] for h in hrefs) <= set(page.ids)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    sections = [i for i in page.ids if i.startswith("s-") and "--" not in i]
    assert sections == ["s-overview", "s-fixed", "s-attn", "s-broken", "s-after"]
    for sid in sections:
        assert f"#{sid}" in hrefs
    # subjects: one subheading per subject that ran (attn: only "plain"; the other is in the NA line)
    assert page.text["h3"][:2] == ["net <script>document.title='PWNED'</script>Sequential", "plainSequential"]
    subject_ids = [i for i in page.ids if i.startswith("s-") and "--" in i]
    assert subject_ids == [
        "s-overview--net-script-document-title-pwned-script", "s-overview--plain",
        "s-fixed--net-script-document-title-pwned-script", "s-fixed--plain",
        "s-attn--plain",
        "s-broken--net-script-document-title-pwned-script", "s-broken--plain",
        "s-after--net-script-document-title-pwned-script", "s-after--plain",
    ]
    assert all(f"#{i}" in hrefs for i in subject_ids)


def test_report_info(built):
    info, html, _ = built
    assert info.size == len(html.encode("utf-8")) == info.path.stat().st_size
    assert list(info.timings) == ["overview", "fixed", "attn", "broken", "after"]
    assert all(t >= 0 for t in info.timings.values())
    assert sum(info.timings.values()) <= info.seconds
    assert info.sizes["fixed"] > info.sizes["after"] > 0 and info.sizes["broken"] == 0
    assert [(r.section, r.subject) for r in info.errors] == [("broken", fx.HOSTILE_SUBJECT), ("broken", "plain")]
    assert info.errors[0].message == f"ValueError: boom {fx.XSS_SCRIPT}"
    lines = info.summary().splitlines()
    assert re.fullmatch(r"overview  +\d+\.\d\d s", lines[0])
    assert re.fullmatch(r"html  +\d+\.\d\d s", lines[5])
    assert re.fullmatch(r"total  +\d+\.\d\d s", lines[6])
    assert 0 < info.write_seconds < info.seconds
    assert lines[7:9] == [f"failed: broken on {fx.HOSTILE_SUBJECT}: ValueError: boom {fx.XSS_SCRIPT}",
                          f"failed: broken on plain: ValueError: boom {fx.XSS_SCRIPT}"]
    assert lines[-1] == f"wrote {info.path} ({info.size / 1024:.0f} KB)"


def test_hostile_strings_are_escaped_everywhere(built):
    _, html, page = built
    for raw in (fx.XSS_SCRIPT, fx.XSS_ATTR, "onerror=\"document"):
        assert raw not in html
    # exactly one script element (the report's own), no event-handler attributes anywhere
    assert [t for t, _ in page.tags].count("script") == 1
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert all(a["src"].startswith("data:image/") for a in page.all("img"))
    escaped = "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;"
    for where in ("<h1>torchloupe report: net " + escaped, "<h3>net " + escaped, "feature maps of " + escaped,
                  "plain text with " + escaped, "table " + escaped, "<p class='frag'>net " + escaped):
        assert where in html, where
    # the label with an attribute breakout stays inside the text (and the title attribute)
    assert "&#34;&gt;&lt;img src=x onerror=&#34;document.title=&#39;PWNED&#39;&#34;&gt;" in html


def test_not_applicable_collapsed_into_one_line(built):
    _, html, page = built
    assert page.text["ul.na"] == [
        "Not applicable to net <script>document.title='PWNED'</script>: no attention layers in "
        "<script>document.title='PWNED'</script>"
    ]
    # the TOC shows the NA section without a link for the NA subject
    assert 'href="#s-attn--net' not in html


def test_failing_section_is_isolated(built):
    _, html, page = built
    errors = page.text["div.error"]
    assert len(errors) == 2
    assert errors[0].startswith("This view failed: ValueError: boom <script>document.title='PWNED'</script> Traceback")
    assert "second line" not in errors[0].split("Traceback")[0]  # one line in the box, the rest folded
    details = [a for t, a in page.tags if t == "details" and a.get("class") != "sec"]
    assert len(details) == 3 and not any("open" in a for a in details)  # 2 tracebacks + build times, closed
    sections = [a for t, a in page.tags if t == "details" and a.get("class") == "sec"]
    assert len(sections) == 5 and all("open" in a for a in sections)  # each section collapses, open at first
    assert "Traceback (most recent call last)" in html and "always_broken" in html
    assert page.text["h2"][-1] == "After the broken one" and "still here" in page.text["p.text"]


def test_overview_predictions_hand_computed(built):
    _, html, page = built
    # e_0 -> logits (2, 1, 0): softmax 66.5 / 24.5 / 9.0 %; e_1 -> (0, 2, 1): class 1, 2, 0
    cards = page.text["div.card"]
    assert cards[0] == ("input 0 · true: zero zero66.5% \"><img src=x onerror=\"document.title='PWNED'\">24.5% "
                        "<script>document.title='PWNED'</script>9.0%")
    assert cards[1].startswith("input 1 · true: <script>document.title='PWNED'</script> "
                               "\"><img src=x onerror=\"document.title='PWNED'\">66.5%")
    assert cards[1].endswith("zero9.0%")
    # what to conclude, under the cards and in the summary at the top, linked to the cards
    finding = ("Top-1 correct on 1 of 2 inputs (predicted: zero, \"><img src=x onerror=\"document.title='PWNED'\">); "
               "least confident: input 1, \"><img src=x onerror=\"document.title='PWNED'\"> at 66.5%.")
    assert page.text["div.conclude"][0] == "What to conclude " + finding + " see the figure"
    assert page.text["div.sum-model"][0] == "net <script>document.title='PWNED'</script>Sequential " + finding + " Overview →"
    assert 'href="#fig-overview--net-script-document-title-pwned-script-1"' in html
    assert 'id="fig-overview--net-script-document-title-pwned-script-1"' in html
    assert 'class="truth good"' in html and 'class="truth bad"' in html
    # the unlabeled subject names classes by index
    assert cards[2].startswith("input 0 ") and "class " in cards[2]
    # model table: class, parameters (4*3 + 3), input and output shapes
    assert "<td>Sequential</td><td class=\"num\">15</td><td class=\"num\">15</td><td>(2, 1, 2, 2)</td><td>(2, 3)</td>" in html


def test_self_contained_no_network_references(built):
    _, html, page = built
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "@import" not in html and "@font-face" not in html
    for t, a in page.tags:
        if t in ("link", "script", "iframe") and ("src" in a or "href" in a):
            assert (a.get("src") or a.get("href")).startswith("data:"), (t, a)


def _img_sizes(page):
    from PIL import Image as PILImage

    out = []
    for a in page.all("img"):
        mime, _, b64 = a["src"][len("data:"):].partition(";base64,")
        data = base64.b64decode(b64)
        if mime == "image/svg+xml":
            out.append((mime, None))
            continue
        with PILImage.open(io.BytesIO(data)) as im:
            out.append((mime, im.size))
    return out


def test_images_inline_and_small(built):
    _, html, page = built
    sizes = _img_sizes(page)
    mimes = [m for m, _ in sizes]
    assert mimes.count("image/gif") == 2 and mimes.count("image/svg+xml") == 4  # 2 subjects x (figure + hand svg)
    widths = [s[0] for m, s in sizes if s]
    # the 3000 px figure: drawn at twice its dpi (for the enlarged view), but at most 2,600 px wide
    assert max(widths) == FIGURE_MAX_WIDTH == 2600
    wide = [a for a in page.all("img") if a.get("width") == "2600"]
    assert len(wide) == 2 and all(a["height"] == "346" for a in wide)
    assert len(html.encode()) < 400_000


def test_deterministic_and_seeded_sections(tmp_path, overview):
    s = fx.sections(overview)
    a = build_report([fx.subjects()[1]], tmp_path / "a.html", sections=[s[2]], options={"seed": 3}, progress=False)
    b = build_report([fx.subjects()[1]], tmp_path / "b.html", sections=[s[2]], options={"seed": 3}, progress=False)
    pa, pb = Page(a.path.read_text()), Page(b.path.read_text())
    assert pa.text["p.text"] == pb.text["p.text"]
    torch.manual_seed(3)
    assert pa.text["p.text"] == [f"seed=3 draw={torch.rand(1).item():.6f}"]


def test_parallel_report_equals_sequential_and_leaves_models_alone(tmp_path, overview):
    """Sections run in forked workers (jobs=2) give the report of jobs=1: same blocks, images,
    statuses and error boxes, in report order; the parent's models and RNG are untouched."""
    subjects, secs = fx.subjects(), fx.sections(overview)
    before = [model_state(s.model) for s in subjects]
    rng = torch.get_rng_state()
    a = build_report(subjects, tmp_path / "a.html", sections=secs, options={"seed": 7}, progress=False, jobs=1)
    b = build_report(subjects, tmp_path / "b.html", sections=secs, options={"seed": 7}, progress=False, jobs=2)
    assert torch.equal(torch.get_rng_state(), rng)
    for s, state in zip(subjects, before):
        assert_same_state(state, model_state(s.model))
    pa, pb = Page(a.path.read_text()), Page(b.path.read_text())
    assert [x["src"] for x in pa.all("img")] == [x["src"] for x in pb.all("img")] and pa.all("img")
    for key in ("p.text", "div.error"):
        assert pa.text.get(key) == pb.text.get(key), key
    assert pa.text["table"][:-1] == pb.text["table"][:-1]  # the last table holds the build times
    assert [(r.section, r.subject, r.status, r.bytes) for r in a.runs] == \
        [(r.section, r.subject, r.status, r.bytes) for r in b.runs]
    assert {r.status for r in b.runs} == {"ok", "not-applicable", "error"}


def test_report_file_has_the_usual_permissions(tmp_path, overview):
    import os
    import stat

    info = build_report([fx.subjects()[1]], tmp_path / "r.html", sections=[overview], progress=False)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600


def test_subject_sections_limit_where_it_appears(tmp_path, overview):
    plain, other = fx.subjects()[1], fx.subjects()[1]
    other.name, other.sections = "only fixed", ["fixed"]
    info = build_report([plain, other], tmp_path / "r.html", sections=fx.sections(overview), progress=False)
    shown = {(r.section, r.subject) for r in info.runs}
    assert ("fixed", "only fixed") in shown and not any(s == "only fixed" for k, s in shown if k != "fixed")
    assert sum(1 for k, s in shown if s == "plain") == 5
    other.sections = ["overveiw"]
    with pytest.raises(UsageError, match=r"subject 'only fixed' lists unknown section 'overveiw'.*closest: 'overview'"):
        build_report([plain, other], tmp_path / "r2.html", sections=fx.sections(overview), progress=False)
    assert not (tmp_path / "r2.html").exists()


def _pid_loader(log, subject):
    """A deferred subject's load(): appends this process's id to ``log``, returns ``subject``."""
    import os

    def load():
        with open(log, "a", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        return subject

    return load


@pytest.mark.parametrize("jobs", [1, 2])
def test_deferred_subject_loads_once_where_its_sections_run(tmp_path, overview, jobs):
    """A DeferredSubject loads once (all its sections are one job): in a worker with jobs=2,
    in this process with jobs=1; its views equal those of the same Subject given directly."""
    import os

    from torchloupe.reporting import DeferredSubject

    secs = fx.sections(overview)
    eager = fx.subjects()[1]
    log = tmp_path / "loads.txt"
    lazy = DeferredSubject(eager.name, _pid_loader(log, eager))
    others = [s for s in fx.subjects() if s.name != eager.name]
    a = build_report([eager, *others], tmp_path / "a.html", sections=secs, options={"seed": 7}, progress=False, jobs=1)
    b = build_report([lazy, *others], tmp_path / "b.html", sections=secs, options={"seed": 7}, progress=False,
                     jobs=jobs)
    pids = log.read_text().split()
    assert len(pids) == 1
    assert (int(pids[0]) == os.getpid()) == (jobs == 1)
    assert [(r.section, r.subject, r.status, r.bytes) for r in a.runs] == \
        [(r.section, r.subject, r.status, r.bytes) for r in b.runs]
    pa, pb = Page(a.path.read_text()), Page(b.path.read_text())
    assert [x["src"] for x in pa.all("img")] == [x["src"] for x in pb.all("img")]
    assert [name for name, _ in b.loads] == [eager.name] and b.loads[0][1] >= 0
    assert f"loaded {eager.name} in" in b.summary()
    assert "(loading or training the model)" in b.path.read_text()


def test_deferred_subject_that_fails_to_load_shows_errors_not_a_failed_report(tmp_path, overview):
    from torchloupe.reporting import DeferredSubject

    def load():
        raise OSError("weights.bin: no such file")

    plain = fx.subjects()[1]
    info = build_report([DeferredSubject("broken <model>", load, sections=["overview"]), plain],
                        tmp_path / "r.html", sections=[overview], progress=False, jobs=2)
    assert [(r.subject, r.status) for r in info.runs] == [("broken <model>", "error"), (plain.name, "ok")]
    assert info.errors[0].message == "loading the model failed: OSError: weights.bin: no such file"
    assert info.loads == ()
    html = info.path.read_text()
    assert "broken &lt;model&gt;" in html and "broken <model>" not in html
    assert Page(html).text["div.error"][0].startswith("This view failed: loading the model failed: OSError: weights.bin")
    with pytest.raises(TypeError, match=r"deferred subject 'x': load must be callable, got int"):
        build_report([DeferredSubject("x", 3)], tmp_path / "r2.html", sections=[overview], progress=False)
    wrong = DeferredSubject("y", lambda: "not a subject")
    info = build_report([wrong], tmp_path / "r3.html", sections=[overview], progress=False)
    assert info.errors[0].message == ("loading the model failed: TypeError: deferred subject 'y': load() must return a "
                                      "Subject with an nn.Module model, got str")


def test_errors_before_work(tmp_path, overview):
    subject = fx.subjects()[1]
    with pytest.raises(UsageError, match=r"unknown report section 'nope'; available: overview"):
        build_report([subject], tmp_path / "r.html", sections=["nope"], progress=False)
    with pytest.raises(UsageError, match=r"no subjects to report on"):
        build_report([], tmp_path / "r.html", progress=False)
    with pytest.raises(UsageError, match=r"is a directory"):
        build_report([subject], tmp_path, sections=[overview], progress=False)
    with pytest.raises(TypeError, match=r"expected torchloupe.reporting.Subject objects, got str"):
        build_report(["x"], tmp_path / "r.html", progress=False)
    assert not (tmp_path / "r.html").exists()


def test_section_returning_non_blocks_is_an_error_box(tmp_path):
    bad = Section("bad", "Bad", "Returns junk.", 1, lambda s, o: ["not a block"])
    info = build_report([fx.subjects()[1]], tmp_path / "r.html", sections=[bad], progress=False)
    assert info.errors[0].message == "TypeError: a section returned a str; expected Figure, Image, Table, Text, Html, Details or Finding blocks"


def test_overview_on_non_class_output(tmp_path, overview):
    model = torch.nn.Conv2d(3, 2, 1)
    info = build_report([Subject("conv", model, torch.rand(1, 3, 4, 4))], tmp_path / "r.html", sections=[overview],
                        progress=False)
    page = Page(info.path.read_text())
    assert page.text["p.text"] == ["The output (1, 2, 4, 4) is not a batch of class scores (N, classes), "
                                   "so no predictions are listed."]


def test_tl_report_one_model(tmp_path):
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    before = model_state(model)
    info = tl.report(model, x, tmp_path / "one.html", labels=["a", "b", "c", "d"], sections=["overview"], progress=False)
    assert_same_state(before, model_state(model))
    page = Page(info.path.read_text())
    assert page.text["h2"] == ["Overview"] and page.text["h3"] == ["TinyCNNTinyCNN"]
    assert len(page.text["div.card"]) == 2 and len(page.all("img")) == 2  # thumbnails of the two images


def test_model_that_raises_leaves_state_and_shows_error(tmp_path):
    model = tiny_cnn()
    arm_tripwire(model)
    before = model_state(model)
    info = tl.report(model, torch.rand(2, 3, 16, 16), tmp_path / "r.html", sections=["overview"], progress=False)
    assert_same_state(before, model_state(model))
    assert info.errors[0].message == "RuntimeError: tripwire: the model raised mid-forward"


def test_unsupported_model_error_reads_as_not_applicable(tmp_path):
    from torchloupe.errors import UnsupportedModelError

    def build(subject, options):
        raise UnsupportedModelError("no LSTM layers")

    sec = Section("rnn", "Recurrent", "Memory.", 75, build)
    info = build_report([fx.subjects()[1]], tmp_path / "r.html", sections=[sec], progress=False)
    assert [r.status for r in info.runs] == ["not-applicable"] and not info.errors
    assert Page(info.path.read_text()).text["ul.na"] == ["Not applicable to plain: no LSTM layers"]


def test_progress_bar_on_stderr(tmp_path, capsys, overview):
    build_report([fx.subjects()[1]], tmp_path / "r.html", sections=[overview], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "report: 100%" in err and "1/1" in err


def test_overview_empty_batch_and_dict_outputs(tmp_path, overview):
    from torch import nn

    empty = build_report([Subject("empty", tiny_cnn(), torch.rand(0, 3, 8, 8))], tmp_path / "e.html",
                         sections=[overview], progress=False)
    assert not empty.errors
    assert Page(empty.path.read_text()).text["p.text"] == ["The batch is empty, so there are no predictions to list."]

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 3)

        def forward(self, x, y):
            return {"aux": y, "logits": self.a(x)}

    model = Two()
    with torch.no_grad():
        model.a.weight.zero_()
        model.a.bias.copy_(torch.tensor([0.5, 1.0, 0.0]))  # softmax(0.5, 1, 0) = 30.7 / 50.6 / 18.6 %
    info = build_report([Subject("two", model, (torch.rand(1, 2), torch.rand(1, 5)), labels=["a", "b"])],
                        tmp_path / "t.html", sections=[overview], progress=False)
    page = Page(info.path.read_text())
    assert page.text["p.text"] == ["2 class names were given, but the model scores 3 classes; "
                                   "classes without a name show as 'class i'."]
    assert page.text["div.card"] == ["input 0 b50.6% a30.7% class 218.6%"]
    assert "<td>(1, 2), (1, 5)</td><td>aux: (1, 5), logits: (1, 3)</td>" in info.path.read_text()


def test_overview_sequence_regression_is_not_read_as_classes(tmp_path, overview):
    from torch import nn

    class PerStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 1)

        def forward(self, x):  # (N, T, 1) -> (N, T): one value per step
            return self.fc(x).squeeze(-1)

    subjects = [Subject("count", PerStep(), torch.rand(2, 5, 1)),
                Subject("forced", nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.rand(2, 4),
                        extras={"output": "values"})]
    info = build_report(subjects, tmp_path / "r.html", sections=[overview], progress=False)
    texts = Page(info.path.read_text()).text["p.text"]
    assert texts == ["The output (2, 5) holds one value per input step, not class scores, so no predictions are listed.",
                     "The output (2, 3) holds values, not class scores, so no predictions are listed."]


def test_broken_section_module_is_reported_not_fatal(tmp_path, monkeypatch):
    from torchloupe.reporting import sections

    extra = tmp_path / "more_sections"
    extra.mkdir()
    (extra / "zz_broken.py").write_text("raise ImportError('needs a package that is not installed')\n")
    monkeypatch.setattr(sections, "__path__", [*sections.__path__, str(extra)])
    info = build_report([fx.subjects()[1]], tmp_path / "r.html", sections="overview", progress=False)
    assert info.import_errors == (("zz_broken", "ImportError: needs a package that is not installed"),)
    assert "failed: section module zz_broken: ImportError: needs a package that is not installed" in info.summary()
    page = Page(info.path.read_text())
    assert page.text["div.error"] == ["Section module zz_broken could not be loaded: ImportError: needs a package "
                                      "that is not installed"]
    assert page.text["h2"] == ["Overview"]


EXTRA_SECTION = """
from torchloupe.reporting.base import Text, register


@register("zz_params", "Parameter count", "How many numbers the model learns.", 135)
def build(subject, options):
    return [Text(f"{sum(p.numel() for p in subject.model.parameters())} parameters")]
"""


def test_a_new_section_is_one_module_and_nothing_else(tmp_path, monkeypatch):
    import sys

    from torchloupe.reporting import base, sections, select_sections

    extra = tmp_path / "more_sections"
    extra.mkdir()
    (extra / "zz_params.py").write_text(EXTRA_SECTION)
    monkeypatch.setattr(sections, "__path__", [*sections.__path__, str(extra)])
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # the registry as it was, after the test
    try:
        assert [s.key for s in select_sections("all")][-2:] == ["quality", "zz_params"]  # by its order, 135 (quality: 130)
        assert [s.key for s in select_sections("zz_params,overview")] == ["overview", "zz_params"]
        assert available_sections()[-1].title == "Parameter count"
        assert base.registered()[-1].key == "zz_params"
        model = tiny_cnn()
        info = build_report([Subject("tiny", model, torch.rand(2, 3, 16, 16))], tmp_path / "r.html",
                            sections=["overview", "zz_params"], progress=False)
        page = Page(info.path.read_text())
        assert page.text["h2"] == ["Overview", "Parameter count"]
        assert f"{sum(p.numel() for p in model.parameters())} parameters" in page.text["p.text"]
    finally:
        sys.modules.pop("torchloupe.reporting.sections.zz_params", None)


def test_anchor_slugs():
    from torchloupe.reporting.builder import _slug, _unique_slugs

    assert _slug("EfficientNet-Lite0 (ImageNet) on scikit-image photos") == "efficientnet-lite0-imagenet-on-scikit-image"
    assert _slug("a" * 60) == "a" * 48
    assert _unique_slugs(["<>", "!!", "x", "Net", "net"]) == ["x", "x-2", "x-3", "net", "net-2"]


def test_output_selection_reaches_every_section(tmp_path):
    """A model returning (features, logits): without output= the class sections say why they do not
    apply; with output=1 they run on the logits, the CAMs equal the plain model's."""
    from torch import nn

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            return torch.zeros(len(x), 5), self.net(x)

    torch.manual_seed(0)
    model, x = Pair().eval(), torch.rand(2, 3, 16, 16)
    sections = ["overview", "cam", "saliency"]
    plain = build_report([Subject("pair", model, x)], tmp_path / "a.html", sections=sections, progress=False)
    text = plain.path.read_text()
    assert "Pass output= (a key or an index) to say where the scores are." in text
    assert text.count("output is not (N, classes) scores (for a dict or tuple output, pass output=KEY or INDEX)") == 2
    picked = build_report([Subject("pair", model, x, output=1)], tmp_path / "b.html", sections=sections, progress=False)
    assert not picked.errors
    text = picked.path.read_text()
    assert "not (N, classes) scores" not in text and "is not a batch of class scores" not in text
    want = tl.cam.GradCAM(model.net)(x).maps
    got = tl.cam.GradCAM(model, "net." + tl.cam.default_layer(model.net, x)[0])(x, output=1).maps
    assert torch.equal(got, want)
