"""What is audited: the examples' fields, read and checked once, so every later step works on plain columns.

`read_examples` turns a list of `dspy.Example` (or dicts) into a `Dataset`: the input fields joined into one text per
example (what duplicates, leaks, outliers and the label classifier look at) and one column per label field, each
marked categorical (a small label set: cleanlab's label checks) or free text (scored by the program's model).
Bad input fails here with an error that names the example and the field.

Example:
    >>> import dspy
    >>> rows = [dspy.Example(ticket=f"ticket {i}", category=["billing", "technical"][i % 2]).with_inputs("ticket")
    ...         for i in range(6)]
    >>> data = read_examples(rows)
    >>> data.input_fields, data.label_fields, data.labels["category"].categorical
    (('ticket',), ('category',), True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A label field is categorical (cleanlab's label checks) when it has at most this many distinct values and each
# value appears on average at least MIN_PER_CLASS times; otherwise it is free text.
MAX_CLASSES = 50
MIN_PER_CLASS = 3


@dataclass
class LabelColumn:
    """One output field: its values as strings and whether they form a small label set."""

    name: str
    values: list[str]
    categorical: bool

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.values))


@dataclass
class Dataset:
    """The audited examples as columns: `texts[i]` renders example i's input fields; `labels` maps field -> column."""

    examples: list[Any]
    input_fields: tuple[str, ...]
    label_fields: tuple[str, ...]
    texts: list[str]
    labels: dict[str, LabelColumn]

    def __len__(self) -> int:
        return len(self.examples)


def _fields_of(example: Any) -> tuple[list[str], list[str] | None]:
    """(all field names, input field names or None when the example does not say)."""
    if isinstance(example, Mapping):
        return list(example.keys()), None
    keys = list(example.keys()) if hasattr(example, "keys") else None
    if keys is None:
        raise TypeError(f"examples must be dspy.Example objects or dicts, got {type(example).__name__}")
    inputs = getattr(example, "_input_keys", None)
    return keys, (list(inputs) if inputs else None)


def value_text(value: Any, *, field: str, index: int, where: str = "example") -> str:
    """A field value as text; numbers and booleans are written out, anything else is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    kind = "None" if value is None else type(value).__name__
    raise TypeError(
        f"{where} #{index} field {field!r} is {kind}, not a string: curate compares text values; "
        f"convert it (e.g. str(...) or json.dumps(...)) or leave the field out with fields=[...]"
    )


def render_inputs(example: Any, fields: Sequence[str], index: int, where: str = "example") -> str:
    """The text compared across examples: one field's value alone, or `name: value` lines for several."""
    values = []
    for name in fields:
        try:
            value = example[name]
        except (KeyError, AttributeError):
            raise ValueError(
                f"{where} #{index} has no field {name!r} (its fields: {sorted(_fields_of(example)[0])}); "
                f"give every example the same fields, or choose them with fields=[...]"
            ) from None
        values.append(value_text(value, field=name, index=index, where=where))
    if len(fields) == 1:
        return values[0]
    return "\n".join(f"{name}: {value}" for name, value in zip(fields, values))


def read_examples(
    examples: Sequence[Any],
    *,
    fields: Sequence[str] | None = None,
    signature: Any = None,
) -> Dataset:
    """Check `examples` and split their fields into inputs (compared as text) and labels (audited per field).

    Inputs come from `Example.with_inputs(...)`, else from `signature` (the program's); `fields` restricts the
    audit to the named fields. Raises ValueError/TypeError naming the example and field for empty sets, missing
    fields and values that are not text.
    """
    if isinstance(examples, (str, bytes, Mapping)) or not isinstance(examples, Sequence):
        raise TypeError(f"examples must be a list of dspy.Example, got {type(examples).__name__}")
    examples = list(examples)
    if len(examples) < 2:
        raise ValueError(f"curate needs at least 2 examples to compare, got {len(examples)}")

    all_fields, input_fields = _fields_of(examples[0])
    if signature is not None:
        sig_inputs = list(signature.input_fields)
        sig_outputs = list(signature.output_fields)
        input_fields = input_fields or sig_inputs
        all_fields = [f for f in all_fields if f in sig_inputs + sig_outputs] or all_fields
    if input_fields is None:
        raise ValueError(
            "curate cannot tell inputs from labels: mark them with example.with_inputs('field', ...), "
            "or pass program= (its signature names the inputs)"
        )
    if fields is not None:
        if isinstance(fields, str):
            fields = [fields]
        unknown = [f for f in fields if f not in all_fields]
        if unknown:
            raise ValueError(f"fields {unknown} are not fields of the examples {all_fields}")
        all_fields = list(fields)
    inputs = tuple(f for f in all_fields if f in input_fields)
    outputs = tuple(f for f in all_fields if f not in input_fields)
    if not inputs:
        raise ValueError(f"no input field to compare among {all_fields}; the inputs are {input_fields}")

    texts = [render_inputs(ex, inputs, i) for i, ex in enumerate(examples)]
    labels = {}
    for name in outputs:
        values = []
        for i, ex in enumerate(examples):
            try:
                value = ex[name]
            except (KeyError, AttributeError):
                raise ValueError(
                    f"example #{i} has no label field {name!r}; label every example, "
                    f"or leave the field out with fields={list(inputs)}"
                ) from None
            values.append(value_text(value, field=name, index=i))
        counts = Counter(values)
        categorical = len(counts) <= MAX_CLASSES and len(values) >= MIN_PER_CLASS * len(counts)
        if len(counts) == 1:
            raise ValueError(
                f"label field {name!r} has one value only ({values[0]!r}) in all {len(values)} examples: "
                f"label checks need at least two classes; leave it out with fields={list(inputs)}"
            )
        labels[name] = LabelColumn(name, values, categorical)
    return Dataset(examples, inputs, outputs, texts, labels)


def read_against(against: Any, input_fields: Sequence[str]) -> dict[str, list[str]]:
    """`against` (a list, or {split name: list}) as {split: input texts}, rendered like the audited examples."""
    if against is None:
        return {}
    if not isinstance(against, Mapping):
        against = {"against": against}
    splits = {}
    for split, rows in against.items():
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
            raise TypeError(f"against[{split!r}] must be a list of examples, got {type(rows).__name__}")
        splits[str(split)] = [render_inputs(ex, input_fields, i, where=f"{split} example") for i, ex in enumerate(rows)]
    return splits
