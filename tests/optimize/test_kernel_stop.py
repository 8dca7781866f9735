"""In a real Jupyter kernel: cp.optimize returns at once, shows the live widget, a Stop click ends the run, and the
output keeps the run's record.

A browser sends exactly these messages: the JobWidget's Stop button is `model.send({type: "stop"})`, which reaches
the kernel as a comm_msg on the shell channel. The kernel handles it while the optimizer runs because the run is on
a background thread and the cell has returned. (tests/ui presses the real button in Chromium.)
"""

from __future__ import annotations

import pathlib
import queue
import re
import textwrap
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

JOB_WIDGET = "compound.widgets.job.JobWidget"


@pytest.fixture(scope="module")
def model_dir(capitals_model, tmp_path_factory):
    model, tokenizer = capitals_model
    path = tmp_path_factory.mktemp("capitals")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def kernel(model_dir):
    """A real IPython kernel with the tiny model loaded from disk and the capitals task defined."""
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        execute(client, f"""
            import sys, dspy, compound as cp
            sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
            from tiny_capitals import RawTextFallbackAdapter, examples, exact_match, UNSEEN
            from compound.testing import CAPITALS
            lm = cp.LM({str(model_dir)!r}, cache=False, max_tokens=24)
            dspy.configure(lm=lm, adapter=RawTextFallbackAdapter())
            seen, unseen = examples(CAPITALS), examples(UNSEEN)
            trainset, valset = seen[:4] + unseen[:2], (seen[4:] + unseen[2:]) * 3
        """, timeout=300)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client, code: str, timeout: float = 120) -> tuple[str, list[dict]]:
    """Run `code`, return (stdout text, iopub messages) once the kernel is idle again."""
    msg_id = client.execute(textwrap.dedent(code))
    out, messages = [], []
    deadline = time.time() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        messages.append(msg)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out), messages


def drain(client, seconds: float) -> list[dict]:
    messages, deadline = [], time.time() + seconds
    while time.time() < deadline:
        try:
            messages.append(client.get_iopub_msg(timeout=0.1))
        except queue.Empty:
            pass
    return messages


def job_widget_updates(messages: list[dict], comm_id: str) -> list[dict]:
    return [m["content"]["data"]["state"] for m in messages
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"]


def test_stop_click_reaches_a_running_optimization(kernel, model_dir):
    _, messages = execute(kernel, """
        job = cp.optimize(dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match,
                          valset=valset, num_candidates=3, num_trials=500, max_bootstrapped_demos=1,
                          max_labeled_demos=0, minibatch=False, program_aware_proposer=False,
                          data_aware_proposer=False, tip_aware_proposer=False, fewshot_aware_proposer=False)
    """)

    views = [m for m in messages if m["msg_type"] == "display_data"]
    assert views and "application/vnd.jupyter.widget-view+json" in views[0]["content"]["data"]
    opened = {m["content"]["comm_id"]: m["content"]["data"]["state"] for m in messages if m["msg_type"] == "comm_open"}
    job_comm = next(cid for cid, state in opened.items() if state.get("_anywidget_id") == JOB_WIDGET)
    assert any(state.get("_model_name") == "VBoxModel" for state in opened.values())

    status, _ = execute(kernel, "print('STATUS', job.status)")
    assert "STATUS running" in status  # the cell returned while 500 trials were still ahead

    # Watch the widget update from the optimizer's threads until a few trials are in, then press Stop.
    updates = []
    deadline = time.time() + 240
    while not any(dict(u.get("stats", [])).get("trials", "0") not in ("0",) for u in updates):
        assert time.time() < deadline, "no trial reached the widget"
        updates += job_widget_updates(drain(kernel, 0.5), job_comm)
    stop = kernel.session.msg("comm_msg", {"comm_id": job_comm, "data": {"method": "custom", "content": {"type": "stop"}}})
    kernel.shell_channel.send(stop)

    out, during = execute(kernel, """
        best = job.result(timeout=60)
        print("RESULT", job.status, len(job.table.rows), type(best).__name__)
    """)
    status, trials, kind = re.search(r"RESULT (\w+) (\d+) (\w+)", out).groups()
    assert status == "stopped" and 0 < int(trials) < 500 and kind == "Predict"
    # The frontend heard the end: the widget's status trait went to "stopped"...
    later = during + drain(kernel, 1.0)
    updates = job_widget_updates(later, job_comm)
    assert any(u.get("status") == "stopped" for u in updates)
    # ...and the output under the first cell became the run's record: table and curve as HTML, a text summary.
    display_id = views[0]["content"]["transient"]["display_id"]
    record = next(m for m in messages + later if m["msg_type"] == "update_display_data"
                  and m["content"]["transient"]["display_id"] == display_id)["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in record
    assert 'class="compound-optimization-record" data-status="stopped"' in record["text/html"]
    assert "<svg" in record["text/html"] and "<table" in record["text/html"]
    assert record["text/plain"].startswith("<OptimizationJob 'MIPROv2 on Predict' stopped")
    assert "baseline" in record["text/plain"]


def test_without_anywidget_the_run_is_an_updating_text_output(kernel, model_dir):
    _, messages = execute(kernel, """
        import compound.widgets._live as live
        live.widgets_installed = lambda: False   # as in a kernel where anywidget is not installed
        job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=exact_match,
                          max_bootstrapped_demos=1, max_labeled_demos=0)
        job.result(timeout=120)
    """)
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert shown and "application/vnd.jupyter.widget-view+json" not in shown[0]["content"]["data"]
    assert shown[0]["content"]["data"]["text/plain"].startswith("<OptimizationJob 'BootstrapFewShot on Predict' running")
    assert updates and updates[-1]["content"]["data"]["text/plain"].startswith(
        "<OptimizationJob 'BootstrapFewShot on Predict' done")
    assert updates[-1]["content"]["transient"]["display_id"] == shown[0]["content"]["transient"]["display_id"]


def test_the_optimizers_prints_and_bars_stay_out_of_every_cell(kernel):
    """BootstrapFewShot prints and draws a tqdm bar from the job's thread; ipykernel sends what a thread writes to the
    cell that started it (the run's context), i.e. under the job's own view. They go to job.log instead."""
    start_msg = kernel.execute("job = cp.optimize(dspy.Predict('question -> answer'), trainset, 'BootstrapFewShot', "
                               "metric=exact_match, max_bootstrapped_demos=1, max_labeled_demos=0)")
    out, messages = execute(kernel, """
        job.result(timeout=120)
        print("LOG", any(line.startswith("Bootstrapped ") for line in job.log), any("%|" in line for line in job.log))
    """)
    messages += drain(kernel, 1.0)
    streams = [m["content"]["text"] for m in messages if m["msg_type"] == "stream"]
    assert not [text for text in streams if "Bootstrapped" in text or "%|" in text], streams
    assert "LOG True True" in out  # ...they are in job.log, and the second cell's own print still arrives
    assert any(m["parent_header"].get("msg_id") == start_msg for m in messages)  # the first cell's output was heard
