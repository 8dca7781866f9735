"""compound's waits in a real ipykernel: a widget's Stop and a kernel interrupt reach a job while a cell blocks on it.

The widget's Stop is exactly what JupyterLab sends for a click: a `comm_msg` {method: custom, content: {type: stop}}
on the shell channel, with a subshell id when "commsOverSubshells" is on and without one when it is off. Each
"it arrives" test has a control case where the same message meets a cell that blocks in a plain `time.sleep`, which
compound does not drive: there the click waits until the cell ends.
"""

from __future__ import annotations

import pytest
from test_kernel_comm import create_subshell, evaluate, iopub_until, run, send_comm_msg, shell_reply

jupyter_client = pytest.importorskip("jupyter_client")

START = """
import time, compound
from compound import jobs
from compound.widgets import JobWidget
from IPython.display import display
def spin(job):
    steps = 0
    while not job.stop_requested:
        steps += 1
        job.update(progress=0.5, detail=f"step {steps}")
        job._stop.wait(0.01)
    return steps
job = jobs.start(spin, name="spin", kind="test")
view = JobWidget(job); display(view)
"""


@pytest.fixture
def kernel():
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.blocking_client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.manager = km
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def stop_click(kc, comm_id, subshell_id=None):
    send_comm_msg(kc, comm_id, {"method": "custom", "content": {"type": "stop"}}, subshell_id=subshell_id)


def run_on_subshell(kc, subshell_id, expr: str) -> str:
    """Evaluate `expr` on a kernel subshell: it runs while the main shell is busy with a cell."""
    content = dict(code="", silent=False, store_history=False, user_expressions={"x": expr}, allow_stdin=False,
                   stop_on_error=False)
    msg = kc.session.msg("execute_request", content)
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return shell_reply(kc, msg["header"]["msg_id"])["content"]["user_expressions"]["x"]["data"]["text/plain"]


IN_WAIT = ("any(frame.name == '_wait_listening' for frame in __import__('traceback').extract_stack("
           "__import__('sys')._current_frames()[__import__('threading').main_thread().ident]))")


def wait_until_inside_a_compound_wait(kc, subshell_id) -> None:
    """Block until the kernel's main thread is inside Job.wait(): only then does an interrupt land in our wait.

    ("busy" comes before ipykernel takes SIGINT for the cell, and any output the cell prints comes before the wait.)
    """
    while run_on_subshell(kc, subshell_id, IN_WAIT) != "True":
        pass


def start_blocking(kc, code):
    msg_id = kc.execute(code)
    iopub_until(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "busy"
                and m["parent_header"].get("msg_id") == msg_id)
    return msg_id


@pytest.mark.slow
@pytest.mark.parametrize("subshells", [True, False], ids=["comms-over-subshells", "no-subshells"])
def test_widget_stop_reaches_a_job_while_a_cell_blocks_in_result(kernel, subshells):
    run(kernel, START)
    comm_id = evaluate(kernel, "view.comm.comm_id").strip("'")
    subshell_id = create_subshell(kernel) if subshells else None
    blocking = start_blocking(kernel, "kept = job.result(timeout=120)")
    stop_click(kernel, comm_id, subshell_id)
    reply = shell_reply(kernel, blocking, timeout=150)
    assert reply["content"]["status"] == "ok", reply["content"]  # not the TimeoutError of an unheard click
    assert evaluate(kernel, "job.status") == "'stopped'" and int(evaluate(kernel, "kept")) > 0


@pytest.mark.slow
def test_control_a_click_during_a_cell_compound_does_not_drive_waits_for_the_cell(kernel):
    run(kernel, START)
    comm_id = evaluate(kernel, "view.comm.comm_id").strip("'")
    blocking = start_blocking(kernel, "time.sleep(1.5); seen = job.status")
    stop_click(kernel, comm_id)
    assert shell_reply(kernel, blocking, timeout=60)["content"]["status"] == "ok"
    assert evaluate(kernel, "seen") == "'running'"  # the click was queued behind the sleeping cell...
    run(kernel, "job.wait(60)")
    assert evaluate(kernel, "job.status") == "'stopped'"  # ...and handled once the cell ended


@pytest.mark.slow
def test_requests_queued_during_the_wait_run_afterwards_in_order(kernel):
    run(kernel, START + "\norder = []")
    comm_id = evaluate(kernel, "view.comm.comm_id").strip("'")
    blocking = start_blocking(kernel, "order.append('wait'); job.result(timeout=120); order.append('waited')")
    later = kernel.execute("order.append('next cell')")  # a cell run while the other still waits
    stop_click(kernel, comm_id)
    assert shell_reply(kernel, blocking, timeout=150)["content"]["status"] == "ok"
    assert shell_reply(kernel, later, timeout=60)["content"]["status"] == "ok"
    assert evaluate(kernel, "order") == "['wait', 'waited', 'next cell']"


@pytest.mark.slow
def test_interrupting_the_kernel_during_result_stops_the_job_and_keeps_its_result(kernel):
    run(kernel, START)
    subshell_id = create_subshell(kernel)
    blocking = start_blocking(kernel, "kept = job.result()")
    wait_until_inside_a_compound_wait(kernel, subshell_id)
    kernel.manager.interrupt_kernel()
    reply = shell_reply(kernel, blocking, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert evaluate(kernel, "job.status") == "'stopped'" and int(evaluate(kernel, "kept")) > 0


@pytest.mark.slow
def test_control_an_interrupt_outside_compound_waits_leaves_the_job_running(kernel):
    run(kernel, START)
    subshell_id = create_subshell(kernel)
    blocking = start_blocking(kernel, "time.sleep(60)")
    in_sleep = IN_WAIT.replace("frame.name == '_wait_listening'", "'time.sleep' in (frame.line or '')")
    while run_on_subshell(kernel, subshell_id, in_sleep) != "True":  # the cell is inside time.sleep
        pass
    kernel.manager.interrupt_kernel()
    reply = shell_reply(kernel, blocking, timeout=120)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert evaluate(kernel, "job.status") == "'running'"
    run(kernel, "job.stop(); job.wait(60)")


@pytest.mark.slow
def test_a_job_shown_in_a_cell_leaves_its_record_there_when_it_ends(kernel):
    run(kernel, "import compound\nfrom compound import jobs\n"
                "job = jobs.start(lambda job: job._stop.wait(120) and 'kept', name='recorded')\nshown = job.display()")
    assert evaluate(kernel, "shown") == "True"
    blocking = start_blocking(kernel, "job.stop(); job.result(timeout=60)")
    update = iopub_until(kernel, lambda m: m["msg_type"] == "update_display_data")
    assert shell_reply(kernel, blocking, timeout=60)["content"]["status"] == "ok"
    data = update["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data  # a record, readable without a kernel
    assert data["text/plain"].startswith("<Job 'recorded' stopped")
    assert "recorded" in data["text/html"]


@pytest.mark.slow
def test_what_a_job_prints_lands_in_the_cell_that_started_it_not_in_later_cells(kernel):
    started = kernel.execute(
        "import threading, compound\nfrom compound import jobs\nrelease = threading.Event()\n"
        "def chatty(job):\n    release.wait(30)\n    for i in range(5):\n        print('job line', i, flush=True)\n"
        "job = jobs.start(chatty, name='chatty')"
    )
    assert shell_reply(kernel, started)["content"]["status"] == "ok"
    later = kernel.execute("release.set(); job.wait(30)")  # the job prints while this later cell runs
    assert shell_reply(kernel, later)["content"]["status"] == "ok"
    lines = []
    while sum("job line" in text for text, _ in lines) < 5:
        msg = iopub_until(kernel, lambda m: m["msg_type"] == "stream")
        lines.append((msg["content"]["text"], msg["parent_header"].get("msg_id")))
    assert {parent for text, parent in lines if "job line" in text} == {started}


@pytest.mark.slow
def test_control_a_plain_thread_prints_into_whichever_cell_runs(kernel):
    started = kernel.execute(
        "import threading\nrelease = threading.Event()\n"
        "def chatty():\n    release.wait(30)\n    print('thread line', flush=True)\n"
        "thread = threading.Thread(target=chatty); thread.start()"
    )
    assert shell_reply(kernel, started)["content"]["status"] == "ok"
    later = kernel.execute("release.set(); thread.join(30)")
    assert shell_reply(kernel, later)["content"]["status"] == "ok"
    msg = iopub_until(kernel, lambda m: m["msg_type"] == "stream" and "thread line" in m["content"]["text"])
    assert msg["parent_header"].get("msg_id") == later  # ipykernel's default: the cell running at the moment
