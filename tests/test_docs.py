"""The user guide runs as written: every ```python block of every page of docs/guide, the blocks of one
page in order in one namespace, in a temporary working directory, matplotlib on Agg, no network."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide"
PAGES = sorted(GUIDE.glob("*.md"))
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_the_guide_has_its_pages_and_each_is_linked_from_the_index():
    names = {p.name for p in PAGES}
    assert {"index.md", "structure.md", "feature-maps.md", "weights.md", "training.md", "maximize.md", "cam.md",
            "attention.md", "fusion.md", "quality.md"} <= names
    index = (GUIDE / "index.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(index))
    assert names - {"index.md"} <= linked
    readme = (GUIDE.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/guide/index.md" in readme


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


class _NoNetwork(socket.socket):
    def connect(self, address):  # loopback only: a Visdom client may try its local server
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
            raise OSError(f"the guide may not use the network (tried {address!r})")
        return super().connect(address)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=[p.stem for p in PAGES if blocks(p)])
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {"__name__": f"guide_{page.stem.replace('-', '_')}"}
    for i, code in enumerate(blocks(page)):
        try:
            exec(compile(code, f"{page.name}[block {i + 1}]", "exec"), namespace)
        except Exception as exc:  # name the page and block in the failure
            raise AssertionError(f"{page.name}, block {i + 1} failed: {type(exc).__name__}: {exc}") from exc
    assert os.getcwd() == str(tmp_path)
