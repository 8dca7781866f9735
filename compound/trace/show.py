"""`cp.show(program)`: the pipeline view of a DSPy program.

The view is a plain data object (JSON-able dict) with three renderings, so every frontend shows something:
`application/vnd.compound.pipeline+json` (drawn by the compound JupyterLab extension), `text/html` (Notebook 7
without the extension, VS Code, GitHub) and `text/plain` (terminals, nbval).
"""

from __future__ import annotations

import html
from typing import Any

PIPELINE_MIME_TYPE = "application/vnd.compound.pipeline+json"


def _field_summaries(fields: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for name, info in fields.items():
        extra = getattr(info, "json_schema_extra", None) or {}
        annotation = getattr(info, "annotation", None)
        type_name = getattr(annotation, "__name__", None) or str(annotation or "str")
        desc = str(extra.get("desc", ""))
        # DSPy fills an undocumented field's desc with the "${name}" placeholder: not worth showing.
        out.append({"name": name, "type": type_name, "desc": "" if desc.startswith("${") else desc})
    return out


def _describe_lm(lm: Any) -> dict[str, Any] | None:
    """Model string, compound engine name and PEFT adapter of an LM (None when the default LM applies)."""
    if lm is None:
        return None
    model = str(getattr(lm, "model", lm))
    # compound tags adapter weights in the model string: local/<base>@<adapter> (dspy-integration.md §4).
    base, _, adapter_from_model = model.partition("@")
    adapter = getattr(lm, "adapter", None) or adapter_from_model or None
    return {"model": model, "base": base, "adapter": adapter}


def describe_program(program: Any) -> dict[str, Any]:
    """The JSON-able description behind the pipeline view.

    Example:
        >>> import dspy
        >>> d = describe_program(dspy.Predict("question -> answer"))
        >>> [m["name"] for m in d["modules"]], d["modules"][0]["demos"]
        (['self'], 0)
    """
    import dspy

    if not isinstance(program, dspy.Module):
        raise TypeError(
            f"cp.show expects a DSPy program (a dspy.Module such as dspy.Predict or your own Module subclass), "
            f"got {type(program).__name__}. Wrap a signature first, e.g. cp.show(dspy.Predict('question -> answer'))."
        )
    default_lm = dspy.settings.lm
    adapter = dspy.settings.adapter  # one per context: every predictor formats its prompts with it
    # "answer.predict" is the Predict inside the module at "answer" (e.g. a ChainOfThought): show that module's type.
    owners = {path.removeprefix("self."): type(module).__name__ for path, module in program.named_sub_modules()}
    # modules that pick the model per call (cp.Routed) describe their routing; the innermost owner comes first
    routers = sorted(((path.removeprefix("self").removeprefix("."), module) for path, module in
                      program.named_sub_modules() if callable(getattr(module, "describe_route", None))),
                     key=lambda item: -len(item[0]))
    modules = []
    for path, predictor in program.named_predictors():
        signature = predictor.signature
        inputs = _field_summaries(signature.input_fields)
        outputs = _field_summaries(signature.output_fields)
        own_lm = getattr(predictor, "lm", None)
        modules.append(
            {
                "name": path,
                "type": owners.get(path.rpartition(".")[0] or "self", type(predictor).__name__)
                if path.split(".")[-1] == "predict"
                else type(predictor).__name__,
                "signature": f"{', '.join(f['name'] for f in inputs)} -> {', '.join(f['name'] for f in outputs)}",
                "instructions": signature.instructions,
                "inputs": inputs,
                "outputs": outputs,
                "demos": len(predictor.demos or []),
                # The predictor's own LM wins over the configured default (predict.py:161).
                "lm": _describe_lm(own_lm if own_lm is not None else default_lm),
                "lm_source": "predictor" if own_lm is not None else ("default" if default_lm is not None else "none"),
            }
        )
        route = next((m.describe_route() for owner, m in routers if _routes(owner, m, path)), None)
        if route is not None:
            lm = {"model": _route_label(route), "base": "routed", "adapter": None}
            modules[-1].update(route=route, lm=lm, lm_source="routed")
    return {
        "program": type(program).__name__,
        "modules": modules,
        "default_lm": _describe_lm(default_lm),
        "dspy_adapter": type(adapter or dspy.ChatAdapter()).__name__,
        "dspy_adapter_source": "configured" if adapter is not None else "default",
    }


def _routes(owner: str, module: Any, path: str) -> bool:
    """Whether the routing module at `owner` picks the model of the predictor at `path`: one inside the module it
    routes (`describe_route()["routes"]`, e.g. "module"), not one it owns for itself (a cascade's verifier)."""
    inner = ".".join(p for p in (owner, module.describe_route().get("routes", "")) if p)
    return not inner or path == inner or path.startswith(inner + ".")


def _route_label(route: dict[str, Any]) -> str:
    """"routed: zoo-tiny 61.0% | zoo-small 39.0% (KNNRouter, threshold 0.137)": the models and their share of calls."""
    total = sum(route["calls"].values())
    split = " | ".join(f"{m} {100 * n / total:.1f}%" if total else m for m, n in route["calls"].items())
    return f"routed: {split} ({route['router']}, threshold {route['threshold']:.3f})"


def _lm_label(lm: dict[str, Any] | None, source: str = "") -> str:
    if lm is None:
        return "no LM configured"
    label = lm["model"] if not lm["adapter"] or "@" in lm["model"] else f"{lm['model']} (adapter {lm['adapter']})"
    # "own": set on the predictor (predictor.lm = ...); "default": dspy.configure / dspy.context(lm=...)
    return f"{label} ({'own' if source == 'predictor' else source})" if source else label


def _adapter_label(data: dict[str, Any]) -> str:
    source = "configured" if data.get("dspy_adapter_source") == "configured" else "DSPy's default"
    return f"{data['dspy_adapter']} ({source})"


class PipelineView:
    """What `cp.show(program)` returns: the program's predictors, signatures, demo counts and models.

    Each line names where the predictor's LM comes from: `own` (set on the predictor, `predictor.lm = ...`) or
    `default` (`dspy.configure` / `dspy.context(lm=...)`); the header names the DSPy adapter that formats the prompts.

    Example:
        >>> import dspy
        >>> from compound.testing import scripted_lm
        >>> with dspy.context(lm=scripted_lm([]), adapter=None):
        ...     print(PipelineView(describe_program(dspy.Predict("question -> answer"))))
        Predict: 1 predictor, adapter ChatAdapter (DSPy's default)
          self  Predict  question -> answer  demos=0  lm=local/scripted (default)
    """

    def __init__(self, data: dict[str, Any]):
        self.data = data

    @property
    def modules(self) -> list[dict[str, Any]]:
        return self.data["modules"]

    def to_text(self) -> str:
        n = len(self.modules)
        lines = [f"{self.data['program']}: {n} predictor{'s' if n != 1 else ''}, adapter {_adapter_label(self.data)}"]
        for m in self.modules:
            lm = _lm_label(m["lm"], m["lm_source"])
            lines.append(f"  {m['name']}  {m['type']}  {m['signature']}  demos={m['demos']}  lm={lm}")
        return "\n".join(lines)

    def to_html(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td><code>{esc(m['name'])}</code></td><td>{esc(m['type'])}</td>"
            f"<td><code>{esc(m['signature'])}</code></td><td>{m['demos']}</td>"
            f"<td>{esc(_lm_label(m['lm'], m['lm_source']))}</td></tr>"
            for m in self.modules
        )
        return (
            f'<div class="compound-pipeline-fallback"><b>{esc(self.data["program"])}</b>'
            f" &middot; adapter {esc(_adapter_label(self.data))}"
            "<table><thead><tr><th>predictor</th><th>module</th><th>signature</th><th>demos</th><th>model</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {PIPELINE_MIME_TYPE: self.data, "text/html": self.to_html(), "text/plain": self.to_text()}

    def __repr__(self) -> str:
        return self.to_text()


def show(program: Any) -> PipelineView:
    """Describe a DSPy program: each predictor's signature, demos and LM (its own or the default), and the adapter.

    In JupyterLab with compound installed this renders as a pipeline diagram; elsewhere as a table or text. It reads
    the current `dspy.context`, so call it where the program runs.

    Example:
        >>> import dspy, compound as cp
        >>> cp.show(dspy.Predict("question -> answer")).modules[0]["signature"]
        'question -> answer'
    """
    return PipelineView(describe_program(program))
