"""The section framework: typed options (report-wide and per subject), typed subject fields in place
of ``extras``, the explicit section order, data objects kept by the report and shown in notebooks."""

from __future__ import annotations

import copy

import pytest
import torch

import torchloupe as tl
from torchloupe.errors import UnsupportedModelError, UsageError
from torchloupe.reporting import ReportOptions, SectionData, SectionOptions, Subject, build_report, section
from torchloupe.reporting.base import known_sections, register, registered
from torchloupe.reporting.sections import ORDER
from torchloupe.reporting.sections.cam import CamData, CamOptions

from tests.helpers import assert_same_state, model_state, tiny_cnn


def _x(n=3, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# --- the order ----------------------------------------------------------------------------------------
def test_every_built_in_section_stands_where_order_lists_it():
    keys = [s.key for s in registered()]
    assert [k for k in keys if k in ORDER] == list(ORDER)  # every listed module registers, in that order
    assert set(ORDER) <= set(keys)
    assert [s.order for s in registered() if s.key in ORDER] == [10 * (i + 1) for i in range(len(ORDER))]


def test_a_built_in_key_with_its_own_order_and_a_new_key_without_one_are_refused():
    with pytest.raises(UsageError, match="'cam' stands where sections.ORDER lists it; leave order out"):
        register("cam", "x", "y", order=5)(lambda s, o: [])
    with pytest.raises(UsageError, match=r"section 'mine' is not in .*ORDER; give order=N \(built-in sections: overview=10"):
        register("mine", "x", "y")(lambda s, o: [])
    with pytest.raises(UsageError, match="options must be a SectionOptions subclass"):
        register("mine", "x", "y", order=5, options=dict)


# --- options ------------------------------------------------------------------------------------------
def test_report_options_from_a_dict_refuse_unknown_keys_and_fields_naming_the_closest():
    assert ReportOptions.of({"quick": True, "cam": {"images": 2}}) == ReportOptions(quick=True, sections={"cam": {"images": 2}})
    with pytest.raises(UsageError, match="unknown report option 'quik'; closest: 'quick'"):
        ReportOptions.of({"quik": True})
    with pytest.raises(UsageError, match="section 'cam' has no option 'image'; closest: 'images'"):
        ReportOptions.of({"cam": {"image": 2}}).check()
    with pytest.raises(UsageError, match="options for unknown section 'cams'; closest: 'cam'"):
        ReportOptions(sections={"cams": {}}).check()
    with pytest.raises(UsageError, match="options for section 'cam' must be CamOptions, got SectionOptions"):
        ReportOptions(sections={"cam": SectionOptions()}).check()


@pytest.mark.parametrize("bad, message", [
    ({"images": 0}, "cam option images=0: expected a positive integer"),
    ({"masked_max_forwards": -1}, "cam option masked_max_forwards=-1: expected an integer >= 0"),
    ({"methods": ["gradcam", "grad-cam"]}, "cam option methods: unknown method 'grad-cam'"),
])
def test_a_bad_option_value_is_refused_before_any_section_runs(tmp_path, monkeypatch, bad, message):
    from torchloupe.reporting import builder

    ran = []
    monkeypatch.setattr(builder, "_run_one", lambda *a: ran.append(a) or ("ok", [], None))
    model = tiny_cnn(0)
    with pytest.raises(UsageError, match=message):
        build_report([Subject("m", model, _x())], tmp_path / "r.html", sections=["overview", "cam"],
                     options={"cam": bad}, progress=False)
    subject = Subject("m", model, _x(), options={"cam": bad})
    with pytest.raises(UsageError, match=message):
        build_report([subject], tmp_path / "r.html", sections=["overview", "cam"], progress=False)
    assert ran == [] and not (tmp_path / "r.html").exists()


def test_the_subjects_options_override_the_reports_field_by_field(tmp_path):
    model = tiny_cnn(0)
    before = model_state(model)
    subject = Subject("m", model, _x(4), options={"cam": CamOptions(methods=["gradcam"])})
    info = build_report([subject], tmp_path / "r.html", sections=["cam"], progress=False,
                        options=ReportOptions(seed=3, sections={"cam": CamOptions(images=2, methods=["eigencam"])}))
    data = info.data["cam", "m"]
    assert isinstance(data, CamData)
    assert list(data.results) == ["Grad-CAM"]  # the subject's methods
    assert data.images.shape[0] == 2  # the report's image count, kept where the subject says nothing
    # the maps are tl.cam's own, on the first two inputs and the predicted classes
    x, ref = _x(4)[:2], copy.deepcopy(model).eval()  # the report explains the model in eval mode
    want = tl.cam.GradCAM(ref, data.layer)(x, ref(x).argmax(1))
    torch.testing.assert_close(data.results["Grad-CAM"].maps, want.maps)
    assert data.targets.tolist() == ref(x).argmax(1).tolist()
    assert_same_state(before, model_state(model))


# --- subjects: typed fields, extras kept for old code ---------------------------------------------------
def test_extras_keys_move_to_their_fields_and_section_options():
    y = torch.tensor([1, 0])
    s = Subject("m", tiny_cnn(0), _x(2), extras={
        "targets": y, "tokens": ["a", "b"], "files": ["f.png"], "signal": torch.zeros(2, 3), "cam_layer": "conv2",
        "memory": "memory", "slot": y, "attend_back": 2, "input_shape": (1, 8, 8), "output": "values",
        "fusion": {"branches": {"a": "conv1"}, "targets": y, "about": "two views"},
    })
    assert s.extras == {}
    assert s.targets is y and s.tokens == ["a", "b"] and s.files == ["f.png"] and s.cam_layer == "conv2"
    assert s.options["attention"] == {"memory": "memory", "slot": y, "attend_back": 2}
    assert s.options["weights"] == {"input_shape": (1, 8, 8)} and s.options["overview"] == {"output": "values"}
    assert s.options["fusion"] == {"branches": {"a": "conv1"}, "about": "two views"}
    with pytest.raises(UsageError, match="unknown extras key 'token'; closest: 'tokens'"):
        Subject("m", tiny_cnn(0), _x(2), extras={"token": []})
    with pytest.raises(UsageError, match="options must be a dict of section options by section key, got list"):
        Subject("m", tiny_cnn(0), _x(2), options=["cam"])


def test_a_subjects_cam_layer_is_the_layer_every_cam_reads():
    model = tiny_cnn(0)
    data = section("cam", model, _x(2), cam_layer="features.0", options={"methods": ["gradcam"]})
    assert data.layer == "features.0"
    ref = copy.deepcopy(model).eval()
    torch.testing.assert_close(data.results["Grad-CAM"].maps,
                               tl.cam.GradCAM(ref, "features.0")(_x(2), ref(_x(2)).argmax(1)).maps)


# --- data objects: kept by the report, shown in a notebook ----------------------------------------------
def test_section_returns_the_data_a_notebook_shows_with_the_reports_blocks():
    model = tiny_cnn(0)
    before = model_state(model)
    data = section("cam", model, _x(2), labels=[f"c{i}" for i in range(10)], options={"methods": ["gradcam", "layercam"]})
    assert isinstance(data, SectionData) and data.section == "cam"
    assert data.names == [f"c{int(k)}" for k in copy.deepcopy(model).eval()(_x(2)).argmax(1)]
    html = data._repr_html_()
    assert html.count("<img") == 1 and "Class activation maps" in html
    assert "What to conclude" in html and "The 2 CAM methods" in html
    assert_same_state(before, model_state(model))
    with pytest.raises(UsageError, match="unknown report section 'cams'; closest: 'cam'"):
        section("cams", model, _x(2))
    with pytest.raises(UnsupportedModelError, match="section 'cam' does not apply to Linear: the inputs are not a batch of images"):
        section("cam", torch.nn.Linear(4, 2), torch.rand(2, 4))


def test_a_section_that_returns_blocks_shows_them_in_a_notebook_too():
    shown = section("overview", tiny_cnn(0), _x(2), labels=[f"c{i}" for i in range(10)])
    assert hasattr(shown, "render") and shown.render()
    html = shown._repr_html_()
    assert "Overview" in html and "<table" in html


def test_report_info_keeps_each_sections_data_also_from_worker_processes(tmp_path):
    model = tiny_cnn(0)
    subjects = [Subject("a", model, _x(2, 1)), Subject("b", model, _x(2, 2))]
    one = build_report(subjects, tmp_path / "1.html", sections=["overview", "cam"], progress=False, jobs=1)
    two = build_report(subjects, tmp_path / "2.html", sections=["overview", "cam"], progress=False, jobs=2)
    assert set(one.data) == set(two.data) >= {("cam", "a"), ("cam", "b")}
    for key in [("cam", "a"), ("cam", "b")]:
        for method, r in one.data[key].results.items():
            torch.testing.assert_close(two.data[key].results[method].maps, r.maps)


def test_every_section_module_builds_from_typed_options():
    for s in known_sections():
        if s.key in ORDER:
            assert issubclass(s.options, SectionOptions)
            opts = s.options(quick=True, seed=1)
            assert opts["quick"] is True and opts.get("seed") == 1 and "precision" in opts
