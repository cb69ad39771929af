"""Sentences for ``--text``: tokenized into the keyword batch a Hugging Face model takes."""

from __future__ import annotations

from ..errors import UsageError


def text_batch(tokenizer, texts: list[str]) -> tuple[dict, list[list[str]]]:
    """``(inputs, tokens)``: the padded batch ``{input_ids, attention_mask, ...}`` the model takes as
    keyword arguments, and each text's tokens (for the attention views)."""
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
