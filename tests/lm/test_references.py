"""What users see at the DSPy boundary: logprobs in DSPy's standard format, the errors they catch, timeouts that
abort, `cp.LM` pickles and saved programs that carry portable references, model strings, and close semantics."""

import json
import pickle
import re
import threading
import subprocess
import sys
import textwrap

import dspy
import pytest

import compound as cp
from compound.lm import engine_of
from compound.lm.dspy_lm import _attach_engine


@pytest.fixture
def lm(capitals):
    model, tok = capitals
    return cp.LM(model, tokenizer=tok, name="capitals", cache=False, max_tokens=64)


@pytest.fixture(scope="module")
def zoo_tiny():
    return cp.zoo.lm("tiny")


def ask(country):
    return f"What is the capital of {country}?"


# ---- log-probabilities, DSPy's standard path ---------------------------------------------------------------------
def test_logprobs_reach_dspy_outputs_for_exactly_the_answer_text(lm):
    out = lm(ask("Japan"), logprobs=True, top_logprobs=2)[0]
    content = out["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == out["text"]  # stop-string tokens trimmed with the text
    assert all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in content)
    assert all(t["top_logprobs"][0]["logprob"] >= t["top_logprobs"][1]["logprob"] for t in content)
    assert "logprobs" not in lm(ask("Japan"))[0]  # only when asked


def test_predict_with_logprobs_config_gets_them_in_the_prediction(lm):
    with dspy.context(lm=lm):
        pred = dspy.Predict("question -> answer")(question=ask("Peru"), config={"logprobs": True})
    assert pred.answer == "Lima"
    tokens = pred.logprobs["content"]
    assert "Lima" in "".join(t["token"] for t in tokens) and all(t["logprob"] <= 0 for t in tokens)
    entry = lm.history[-1]["response"]
    assert entry.logprobs and entry.logprobs[0].token_id is not None  # dspy.lm15.TokenLogprob on the Response


# ---- the errors users catch ------------------------------------------------------------------------------------
def test_an_overflowing_prompt_raises_context_window_exceeded_naming_the_cause(capitals):
    model, tok = capitals
    lm = cp.LM(model, tokenizer=tok, name="capitals-short", cache=False, num_retries=0,
               config=cp.EngineConfig(max_seq_len=192))
    demos = [dspy.Example(question=ask(c), answer=a) for c, a in [("France", "Paris"), ("Italy", "Rome")]]
    predict = dspy.Predict("question -> answer")
    predict.demos = demos
    with dspy.context(lm=lm), pytest.raises(dspy.ContextWindowExceededError) as info:
        predict(question=ask("Peru"))
    message = str(info.value)
    assert "does not fit the context of 192 tokens" in message and "2 demo turns" in message
    assert "demos take" in message and "max_bootstrapped_demos" in message and "ChatAdapter" in message


def test_a_zoo_model_formatted_by_the_wrong_adapter_says_so(zoo_tiny):
    signature = dspy.Signature("ticket -> category", "Classify the support ticket. " * 12)
    # refused before the model runs (DSPy would otherwise report a parse error about the model's answer)
    with dspy.context(lm=zoo_tiny.copy(num_retries=0)), pytest.raises(dspy.LMInvalidRequestError,
                                                                       match="reads CompactAdapter prompts"):
        dspy.Predict(signature)(ticket="The app crashes whenever I open the settings page.")
    with dspy.context(lm=zoo_tiny, adapter=cp.CompactAdapter()):  # control: the adapter it reads
        assert dspy.Predict(signature)(ticket="The app crashes whenever I open the settings page.").category


def test_a_timed_out_call_raises_lm_timeout_and_is_aborted(capitals):
    model, tok = capitals
    lm = cp.LM(model, tokenizer=tok, name="capitals", cache=False, num_retries=0, request_timeout=0.05)
    engine = engine_of(lm)
    gate = threading.Event()  # the engine thread waits here before the prefill: the call cannot finish in time
    engine.faults.inject("prefill", match=lambda seq: not gate.wait(60))
    before = engine.stats().requests_aborted
    with dspy.context(lm=lm), pytest.raises(dspy.LMTimeoutError, match="request was aborted"):
        dspy.Predict("question -> answer")(question=ask("Peru"))  # an answer of many tokens
    gate.set()
    assert wait_for(lambda: engine.stats().requests_aborted == before + 1 and not engine.scheduler.running)
    engine.faults.clear()
    patient = cp.LM(model, tokenizer=tok, name="capitals", cache=False)  # the same engine, no timeout
    assert engine_of(patient) is engine
    with dspy.context(lm=patient):
        assert dspy.Predict("question -> answer")(question=ask("Peru")).answer == "Lima"


def test_a_stream_the_caller_stops_reading_is_aborted(lm):
    from dspy.lm15 import Message, Request

    engine = engine_of(lm)
    gate = threading.Event()  # hold the engine before the prefill: the request is surely unfinished when dropped
    engine.faults.inject("prefill", match=lambda seq: not gate.wait(60))
    before = engine.stats().requests_aborted
    events = lm._engine_spec.stream(Request(model=lm.model, messages=(Message.user(ask("Peru")),)))
    assert next(events).type == "start"
    events.close()  # the consumer walks away
    gate.set()
    assert wait_for(lambda: engine.stats().requests_aborted == before + 1 and not engine.scheduler.running)
    engine.faults.clear()


def wait_for(condition, timeout=30.0) -> bool:
    """Poll a condition of the engine's own bookkeeping until it holds (False after `timeout` seconds)."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        tick.wait(0.01)
    return False


# ---- pickles and saved programs ---------------------------------------------------------------------------------
def test_lm_pickles_as_a_reference_and_reattaches_to_the_loaded_model(lm):
    blob = pickle.dumps(lm)
    assert len(blob) < 20_000  # a reference, never the weights
    again = pickle.loads(blob)
    assert again.model == lm.model and engine_of(again) is engine_of(lm)
    with dspy.context(lm=again):
        assert dspy.Predict("question -> answer")(question=ask("Spain")).answer == "Madrid"


def test_whole_program_save_and_load(lm, tmp_path):
    program = dspy.ChainOfThought("question -> answer")
    program.predict.lm = lm
    program.save(tmp_path / "prog", save_program=True)
    assert (tmp_path / "prog" / "program.pkl").stat().st_size < 100_000
    loaded = dspy.load(tmp_path / "prog", allow_pickle=True)
    assert engine_of(loaded.predict.lm) is engine_of(lm)
    assert loaded(question=ask("Italy")).answer == "Rome"


def test_a_reference_to_other_weights_is_refused(zoo_tiny):
    reference = zoo_tiny._engine_spec.reference()
    assert reference["source"] == "zoo:tiny" and reference["dspy_adapter"].endswith(":CompactAdapter")
    with pytest.raises(ValueError, match="not the ones this program was saved with"):
        _attach_engine({**reference, "fingerprint": "0123456789abcdef"})


def test_a_saved_zoo_program_is_portable_and_runs_in_a_fresh_process(zoo_tiny, tmp_path):
    """The JSON holds `zoo:tiny` (no cache path) and the adapter; a fresh process loads and runs it without
    dspy.configure(adapter=...), both from JSON state and from a whole-program pickle."""
    triage = cp.zoo.tasks["triage"]
    program = dspy.Predict(triage.signature)
    program.lm = zoo_tiny
    program.save(tmp_path / "triage.json")
    program.save(tmp_path / "whole", save_program=True)
    state = (tmp_path / "triage.json").read_text()
    assert '"source": "zoo:tiny"' in state and str(cp.zoo.cache_root()) not in state
    with dspy.context(adapter=cp.CompactAdapter()):
        expected = program(**triage.test[0].inputs()).category
    script = textwrap.dedent(f"""
        import dspy, compound as cp, json
        t = cp.zoo.tasks["triage"]
        p = dspy.Predict(t.signature)
        p.load({str(tmp_path / "triage.json")!r}, allow_unsafe_lm_state=True)
        whole = dspy.load({str(tmp_path / "whole")!r}, allow_pickle=True)
        ex = t.test[0].inputs()
        print(json.dumps([p(**ex).category, whole(**ex).category, type(dspy.settings.adapter).__name__]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [expected, expected, "CompactAdapter"]


# ---- model strings and lifecycle ------------------------------------------------------------------------------------
def test_local_model_strings(lm, zoo_tiny):
    assert cp.LM("local/capitals")._engine_spec.loaded is lm._engine_spec.loaded
    again = cp.LM("local/zoo-tiny")
    assert again._engine_spec.loaded is zoo_tiny._engine_spec.loaded
    assert again.kwargs["max_tokens"] == zoo_tiny.kwargs["max_tokens"] == 24  # the zoo's defaults, either way
    # other tests in this process may have served adapters on zoo-tiny: the error names whichever are loaded
    loaded = zoo_tiny._engine_spec.loaded.adapters or "none"
    with pytest.raises(ValueError, match=re.escape(f"adapter 'nope' is not loaded on 'zoo-tiny' (loaded adapters: {loaded})")):
        cp.LM("local/zoo-tiny@nope")
    with pytest.raises(ValueError, match="no model named 'never-loaded' is loaded.*capitals"):
        cp.LM("local/never-loaded")


def test_closing_a_copy_never_stops_the_shared_engine(lm):
    engine = engine_of(lm)
    lm.copy(temperature=0.5).close()  # DSPy's close: custom engines are borrowed
    lm._engine_spec.close()
    assert engine.alive and engine_of(lm) is engine
    cp.lm.close(lm)  # this one does: the K/V is freed, the weights stay, the next call starts a fresh engine
    assert not engine.alive and engine.kv.nbytes == 0
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question=ask("Peru")).answer == "Lima"
    assert engine_of(lm) is not engine and engine_of(lm).model is engine.model


def test_registry_keys_on_engine_config_and_shares_the_weights(capitals):
    model, tok = capitals
    a = cp.LM(model, tokenizer=tok, name="capitals")
    b = cp.LM(model, tokenizer=tok, name="capitals", config=cp.EngineConfig(max_batch_size=2))
    assert a._engine_spec.loaded is not b._engine_spec.loaded
    assert engine_of(b).config.max_batch_size == 2 and engine_of(a).model is engine_of(b).model


def test_model_object_reference_needs_the_object_in_this_process(lm):
    reference = {**lm._engine_spec.reference(), "name": "not-here"}
    assert reference["source"] == "memory:capitals"
    with pytest.raises(ValueError, match="handed to compound as an object"):
        _attach_engine(reference)


def test_misspelled_hub_id_offline_fails_fast_with_what_to_do(monkeypatch):
    """Without HF_HUB_OFFLINE, no-network is detected once (one probe), then every hub load is local-only: a
    misspelled id fails at once with what to do, instead of retrying the network."""
    import compound.lm.loading as loading

    probes = []

    def probe(*args, **kwargs):
        probes.append(args)
        raise OSError("no network (test)")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_HUB_REACHABLE", None)
    monkeypatch.setattr(loading.socket, "create_connection", probe)
    for _ in range(2):
        with pytest.raises(FileNotFoundError, match="not in the local cache; check the name, or connect to download"):
            cp.LM("HuggingFaceTB/SmolLM2-135M-Instruc")
    assert len(probes) == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set: no probe at all
    with pytest.raises(FileNotFoundError, match="not in the local cache"):
        cp.LM("HuggingFaceTB/SmolLM2-135M-Instruc")
    assert len(probes) == 1
