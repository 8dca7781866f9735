"""Real zoo models for routing tests: tiny and small served by compound's engine, the help-desk module, a router."""

from __future__ import annotations

import dspy
import numpy as np
import pytest

import compound as cp
from compound.zoo.helpdesk import HelpDesk, requests

# what each kind of request needs (measured on the zoo; see compound/zoo/helpdesk.py): tiny solves categories,
# small is needed for order numbers and conversions, nobody solves sums (so the cheap model is as good)
NEEDS = {"category": [1.0, 1.0], "order number": [0.0, 1.0], "conversion": [0.0, 1.0], "sum": [0.0, 0.0]}


@pytest.fixture(scope="session")
def tiny():
    return cp.zoo.lm("tiny")


@pytest.fixture(scope="session")
def small():
    return cp.zoo.lm("small")


@pytest.fixture(autouse=True)
def compact_adapter():
    with dspy.context(adapter=cp.CompactAdapter()):
        yield


@pytest.fixture()
def desk():
    return HelpDesk()


@pytest.fixture(scope="session")
def kind_training():
    """Help-desk query texts and the (n, 2) scores of what each kind needs: data a router learns the kinds from."""
    examples = requests("train", per_kind=10)
    from compound.route.collector import query_text

    queries = [query_text(HelpDesk(), ex.inputs().toDict()) for ex in examples]
    return queries, np.array([NEEDS[ex.kind] for ex in examples])


@pytest.fixture(scope="session")
def kind_router(kind_training):
    """A logistic router fitted on help-desk query texts, scored by what each kind needs: routes by kind."""
    return cp.route.LogisticRouter(C=10.0).fit(*kind_training, costs=[1.0, 2.0], models=["zoo-tiny", "zoo-small"])
