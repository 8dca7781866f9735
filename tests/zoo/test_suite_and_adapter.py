"""The task suite, the compact adapter and the tokenizer: fast checks, no model involved."""

import dspy
import pytest

import compound as cp
from compound.zoo.suite import SPLIT_SIZES, TASKS
from compound.zoo.tokenizer import train_tokenizer
from compound.zoo.train import corpus_messages, encode, tokenizer_texts


def test_suite_has_graded_tasks_with_disjoint_deterministic_splits():
    assert cp.zoo.tasks.names == ("triage", "extract", "convert", "add")
    for task in cp.zoo.tasks:
        train, dev, test = task.train, task.dev, task.test
        assert [len(train), len(dev), len(test)] == [SPLIT_SIZES[s] for s in ("train", "dev", "test")]
        key = lambda ex: tuple(ex[k] for k in task.inputs)  # noqa: E731
        assert not {key(e) for e in test} & ({key(e) for e in train} | {key(e) for e in dev}), task.name
        assert set(test[0].inputs().keys()) == set(task.inputs)
        assert task.test[0] == test[0]  # regenerated identically
    ex = cp.zoo.tasks["add"].test[0]
    a, b = (int(x) for x in ex.expression.split(" + "))
    assert int(ex.total) == a + b


def test_metric_compares_normalized_outputs():
    task = cp.zoo.tasks["triage"]
    ex = task.test[0]
    assert task.metric(ex, dspy.Prediction(category=f"  {ex.category.upper()}.")) == 1.0
    assert task.metric(ex, dspy.Prediction(category="nonsense")) == 0.0
    assert task.metric(ex, dspy.Prediction()) == 0.0
    with pytest.raises(KeyError, match="the tasks are"):
        cp.zoo.tasks["nope"]


def test_compact_adapter_renders_short_prompts_and_parses_them_back():
    adapter = cp.CompactAdapter()
    sig = dspy.Signature("ticket, lang -> category, order_id", "Triage it.")
    messages = adapter.format(sig, [], {"ticket": "App crashes.", "lang": "en"})
    assert messages == [
        {"role": "system", "content": "Triage it."},
        {"role": "user", "content": "ticket: App crashes.\nlang: en"},
    ]
    answer = adapter.format_assistant_message_content(sig, {"category": "technical", "order_id": "12345"})
    assert answer == "category: technical\norder_id: 12345"
    assert adapter.parse(sig, answer) == {"category": "technical", "order_id": "12345"}
    # multi-line values continue until the next output field
    assert adapter.parse(sig, "order_id: 1\ncategory: a\nb")["category"] == "a\nb"
    with pytest.raises(dspy.utils.exceptions.AdapterParseError):
        adapter.parse(sig, "category: technical")  # order_id missing


def test_compact_adapter_typed_fields_bare_answers_and_demos():
    adapter = cp.CompactAdapter()
    sig = dspy.Signature("expression -> total: int", "Add.")
    assert adapter.parse(sig, "total: 42") == {"total": 42}
    assert adapter.parse(sig, "42") == {"total": 42}  # a single output field may come bare
    with pytest.raises(dspy.utils.exceptions.AdapterParseError, match="cannot parse"):
        adapter.parse(sig, "total: forty-two")
    data = adapter.format_finetune_data(sig, [{"expression": "1 + 1", "total": 2}], {"expression": "2 + 3"}, {"total": 5})
    roles = [m["role"] for m in data["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert data["messages"][-1]["content"] == "total: 5"


def test_tokenizer_splits_digits_and_training_text_is_the_engine_prompt():
    messages = {name: convos[:50] for name, convos in corpus_messages("train").items()}
    tok = train_tokenizer(tokenizer_texts(messages), vocab_size=400)
    assert tok.convert_ids_to_tokens(tok("order 48213", add_special_tokens=False)["input_ids"])[-5:] == list("48213")
    encoded = encode(tok, messages)  # raises if a packed sequence is not the chat template's / engine's tokens
    ids, is_answer = encoded["add"].sequence([0, 1, 2])  # three examples: the first two are demos of the third
    answers = tok.decode([i for i, a in zip(ids, is_answer) if a], skip_special_tokens=True)
    assert answers == "".join(convo[-1]["content"] for convo in messages["add"][:3])
    assert tok.convert_ids_to_tokens(ids[is_answer.index(True) - 1]) == "<|assistant|>"
    assert tok.decode(ids[: len(encoded["add"].system)], skip_special_tokens=True) == "Add the numbers."
    with pytest.raises(Exception, match="roles system, user and assistant"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
