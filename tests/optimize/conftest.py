"""A real tiny model for optimizer tests: compound.testing's capitals Llama, served through cp.LM.

The model answers `question -> answer` capital questions in ChatAdapter format for the countries it was trained on
and gets every other country wrong, so optimizers see real, mixed scores. Its other outputs (few-shot prompts,
MIPROv2's instruction proposals, GEPA's reflections) are whatever the tiny model generates.
"""

from __future__ import annotations

import dspy
import pytest
from tiny_capitals import UNSEEN, RawTextFallbackAdapter, examples

import compound as cp
from compound.testing import CAPITALS, capitals_llama


@pytest.fixture(scope="session")
def capitals_model():
    return capitals_llama()


@pytest.fixture(scope="session")
def capitals_lm(capitals_model):
    model, tokenizer = capitals_model
    return cp.LM(model, tokenizer=tokenizer, name="capitals-optimize", cache=False, max_tokens=24)


@pytest.fixture()
def configured(capitals_lm):
    """dspy configured with the tiny model and the raw-text fallback adapter, for one test."""
    with dspy.context(lm=capitals_lm, adapter=RawTextFallbackAdapter()):
        yield capitals_lm


@pytest.fixture()
def dataset():
    """(trainset, valset): seen and unseen countries mixed, so scores are neither 0 nor 1."""
    seen, unseen = examples(CAPITALS), examples(UNSEEN)
    return seen[:4] + unseen[:2], seen[4:] + unseen[2:]
