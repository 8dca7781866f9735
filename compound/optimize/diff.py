"""What an optimizer changed: each predictor's instructions (word by word) and demos, against the starting program.

Example:
    >>> import dspy
    >>> start = dspy.Predict("question -> answer")
    >>> better = start.deepcopy()
    >>> better.signature = better.signature.with_instructions("Answer in one word.")
    >>> better.demos = [dspy.Example(question="2+2?", answer="4")]
    >>> print(diff_text(program_diff(start, better)))
    self: instructions [-Given the fields `question`, produce the fields `answer`.-] {+Answer in one word.+}
      + demo {question: 2+2?, answer: 4}
"""

from __future__ import annotations

import difflib
from typing import Any

import dspy


def _demo_text(demo: Any) -> str:
    fields = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
    shown = {k: v for k, v in fields.items() if not str(k).startswith("augmented")}
    return "{" + ", ".join(f"{k}: {' '.join(str(v).split())[:80]}" for k, v in shown.items()) + "}"


def word_diff(old: str, new: str) -> list[list[str]]:
    """`[[op, text], ...]` with op "=", "-" or "+": the words kept, removed and added from `old` to `new`."""
    a, b = old.split(), new.split()
    ops: list[list[str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(["=", " ".join(a[i1:i2])])
            continue
        if i2 > i1:
            ops.append(["-", " ".join(a[i1:i2])])
        if j2 > j1:
            ops.append(["+", " ".join(b[j1:j2])])
    return ops


def program_diff(start: dspy.Module, other: dspy.Module) -> list[dict[str, Any]]:
    """Per predictor of `other`: its instruction diff against `start` and the demos it added and dropped.

    Each entry: {"predictor", "instructions": [[op, words], ...], "changed": bool, "demos_added": [text],
    "demos_removed": [text], "demos": count}.
    """
    before = dict(start.named_predictors())
    entries = []
    for name, pred in other.named_predictors():
        old = before.get(name)
        old_text = old.signature.instructions if old is not None else ""
        new_text = pred.signature.instructions
        old_demos = [_demo_text(d) for d in (old.demos if old is not None else [])]
        new_demos = [_demo_text(d) for d in pred.demos]
        entries.append({
            "predictor": name,
            "instructions": word_diff(old_text, new_text),
            "changed": " ".join(old_text.split()) != " ".join(new_text.split()),
            "demos_added": [d for d in new_demos if d not in old_demos],
            "demos_removed": [d for d in old_demos if d not in new_demos],
            "demos": len(new_demos),
        })
    return entries


def diff_text(entries: list[dict[str, Any]]) -> str:
    """The diff as text: `[-removed-]` and `{+added+}` words, `+ demo` / `- demo` lines."""
    lines = []
    for entry in entries:
        if entry["changed"]:
            words = " ".join(text if op == "=" else f"[-{text}-]" if op == "-" else f"{{+{text}+}}"
                             for op, text in entry["instructions"])
            lines.append(f"{entry['predictor']}: instructions {words}")
        else:
            lines.append(f"{entry['predictor']}: instructions unchanged")
        lines += [f"  + demo {d}" for d in entry["demos_added"]]
        lines += [f"  - demo {d}" for d in entry["demos_removed"]]
    return "\n".join(lines)


def diff_html(entries: list[dict[str, Any]]) -> str:
    """The diff as static HTML (`<del>`/`<ins>` words, demo lists), for a job's record."""
    import html

    parts = []
    for entry in entries:
        words = "".join(
            f"<del>{html.escape(text)}</del> " if op == "-" else f"<ins>{html.escape(text)}</ins> " if op == "+"
            else f"{html.escape(text)} "
            for op, text in entry["instructions"]
        )
        demos = "".join(f"<li><ins>+ {html.escape(d)}</ins></li>" for d in entry["demos_added"])
        demos += "".join(f"<li><del>- {html.escape(d)}</del></li>" for d in entry["demos_removed"])
        parts.append(
            f'<div class="compound-diff" data-predictor="{html.escape(entry["predictor"])}">'
            f"<b>{html.escape(entry['predictor'])}</b> <span>{words}</span>"
            + (f"<ul>{demos}</ul>" if demos else "") + "</div>"
        )
    return "".join(parts)
