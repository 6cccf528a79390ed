"""Greedy decoding cannot loop: an n-gram the answer already holds is never completed again."""

import torch

from app.llm.generator import Generator
from app.settings import Settings


def decoder(n: int) -> Generator:
    gen = Generator.__new__(Generator)  # only the decoding rule is under test: no model needed
    gen.config = Settings(no_repeat_ngram=n).generator_config()
    return gen


def test_repeated_ngram_is_banned():
    logits = torch.zeros(1, 10)
    out = decoder(3)._penalise(logits, [1, 2, 5, 1, 2])  # "1 2 5" exists: after "1 2", 5 is banned
    assert out[0, 5] == float("-inf")
    assert torch.isfinite(out[0, [0, 1, 2, 3, 4, 6]]).all()
    assert torch.equal(logits, torch.zeros(1, 10))  # the caller's logits are untouched


def test_first_mentions_and_off_switch_are_left_alone():
    logits = torch.zeros(1, 10)
    assert torch.equal(decoder(3)._penalise(logits, [1, 2, 3, 4]), logits)
    assert torch.equal(decoder(0)._penalise(logits, [1, 2, 5, 1, 2]), logits)
