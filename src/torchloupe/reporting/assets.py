"""The shared style and script of the report's interactive views, once per page.

Each interactive view (the model graph, the attention token view) is markup plus a JSON data
island; its style and script are written once, for every view of its kind on the page.
"""

from __future__ import annotations


def shared_assets(page: str) -> tuple[str, str]:
    """``(css, js)`` for the interactive views found in ``page`` (empty strings when there are none)."""
    css, js = [], []
    # a page whose template already holds a view's script (window.torchloupeGraph / ...Tokens) gets no second copy
    if 'class="tl-root"' in page and "window.torchloupeGraph" not in page:
        from ..render.graph.html import assets

        c, j = assets()
        css.append(c)
        js.append(j)
    if ('class="tl-token-view"' in page or 'class="tl-layer-picker"' in page) and "window.torchloupeTokens" not in page:
        from ..render.attention import token_view_assets

        c, j = token_view_assets()
        css.append(c)
        js.append(j)
    return "".join(css), "".join(js)


def inline_shared_assets(page: str) -> str:
    """``page`` with the shared style before ``</head>`` and the shared script before ``</body>``."""
    css, js = shared_assets(page)
    if css:
        at = page.find("</head>")
        page = page[:at] + f"<style>{css}</style>" + page[at:] if at >= 0 else f"<style>{css}</style>" + page
    if js:
        at = page.rfind("</body>")
        page = page[:at] + f"<script>{js}</script>" + page[at:] if at >= 0 else page + f"<script>{js}</script>"
    return page
