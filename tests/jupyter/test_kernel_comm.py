"""The `compound` comm in a real ipykernel, driven over ZMQ the way JupyterLab drives it.

Proves the transport claims of the sidebar: `import compound` announces itself with a snapshot, a late
frontend finds the comm with comm_info, and Cancel reaches a job while a cell blocks the main shell in `job.result()`,
whether the frontend sends comm messages on a kernel subshell (JupyterLab's default "commsOverSubshells":
"perCommTarget") or not at all (the setting off; VS Code, Colab). The widget's Stop and kernel interrupts are in
test_kernel_wait.py.
"""

from __future__ import annotations

import os
import queue
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

START_JOB = """
import time, compound
from compound import jobs
def spin(job):
    while not job.stop_requested:
        job.update(progress=0.25, detail="spinning")
        time.sleep(0.02)
    return "stopped cleanly"
job = jobs.start(spin, name="spin", kind="test")
job.id
"""


@pytest.fixture
def kernel():
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "JPY_SESSION_NAME": "sidebar.ipynb"})  # as a Jupyter server session starts it
    kc = km.blocking_client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def iopub_until(kc, predicate, timeout=30.0):
    """Read IOPub until predicate(msg) is true; return that message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if predicate(msg):
            return msg
    raise AssertionError("expected kernel message did not arrive")


def run(kc, code, timeout=60):
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def evaluate(kc, expr):
    # After a cell fails (e.g. an interrupt), ipykernel aborts requests that were queued behind it; ask again then.
    while (reply := kc.execute_interactive("", user_expressions={"x": expr}, timeout=30,
                                           output_hook=lambda m: None))["content"]["status"] == "aborted":
        pass
    return reply["content"]["user_expressions"]["x"]["data"]["text/plain"]


def send_comm_msg(kc, comm_id, data, subshell_id=None):
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)


def create_subshell(kc):
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["subshell_id"]


def shell_reply(kc, msg_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def comm_id_of_compound(kc):
    reply = shell_reply(kc, kc.comm_info(target_name="compound"))
    comms = reply["content"]["comms"]
    assert len(comms) == 1, comms
    return next(iter(comms))


@pytest.mark.slow
def test_import_announces_a_comm_with_a_snapshot_and_late_frontends_find_it(kernel):
    shell_reply(kernel, kernel.execute("import compound"))
    opened = iopub_until(kernel, lambda m: m["msg_type"] == "comm_open"
                         and m["content"]["target_name"] == "compound")
    assert opened["content"]["data"]["type"] == "snapshot"
    assert opened["content"]["data"]["device"]["used_bytes"] > 0
    # A frontend that connects later (page reload) finds the same comm.
    assert comm_id_of_compound(kernel) == opened["content"]["comm_id"]
    # %load_ext after import keeps the single bridge.
    run(kernel, "%load_ext compound")
    assert comm_id_of_compound(kernel) == opened["content"]["comm_id"]


@pytest.mark.slow
def test_load_ext_alone_registers_the_bridge(kernel):
    run(kernel, "%load_ext compound")
    assert evaluate(kernel, "__import__('compound.jupyter').jupyter.kernel_bridge() is not None") == "True"


@pytest.mark.slow
def test_cancel_between_cells_and_snapshots_follow_the_job(kernel):
    run(kernel, "import compound")
    comm_id = comm_id_of_compound(kernel)
    run(kernel, START_JOB)
    job_id = evaluate(kernel, "job.id").strip("'")
    iopub_until(kernel, lambda m: m["msg_type"] == "comm_msg"
                and any(j["id"] == job_id and j["status"] == "running"
                        for j in m["content"]["data"].get("jobs", [])))
    send_comm_msg(kernel, comm_id, {"type": "cancel", "job_id": job_id})
    reply = iopub_until(kernel, lambda m: m["msg_type"] == "comm_msg"
                        and m["content"]["data"].get("type") == "cancelled")
    assert reply["content"]["data"] == {"type": "cancelled", "job_id": job_id, "ok": True, "error": None}
    iopub_until(kernel, lambda m: m["msg_type"] == "comm_msg"
                and any(j["id"] == job_id and j["status"] == "stopped"
                        for j in m["content"]["data"].get("jobs", [])))
    assert evaluate(kernel, "job.result(timeout=5)") == "'stopped cleanly'"


@pytest.mark.slow
@pytest.mark.parametrize("subshells", [True, False], ids=["comms-over-subshells", "no-subshells"])
def test_cancel_reaches_a_job_while_a_cell_blocks_in_result(kernel, subshells):
    """The cell waits on a job that runs until stopped; only a Cancel handled during that wait can end it."""
    run(kernel, "import compound")
    comm_id = comm_id_of_compound(kernel)
    run(kernel, START_JOB)
    job_id = evaluate(kernel, "job.id").strip("'")
    subshell_id = create_subshell(kernel) if subshells else None

    blocking = kernel.execute("outcome = job.result(timeout=120)")  # blocks the main shell
    iopub_until(kernel, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "busy"
                and m["parent_header"].get("msg_id") == blocking)
    send_comm_msg(kernel, comm_id, {"type": "cancel", "job_id": job_id}, subshell_id=subshell_id)
    reply = shell_reply(kernel, blocking, timeout=150)
    assert reply["content"]["status"] == "ok", reply["content"]  # not the TimeoutError of an unheard Cancel
    assert evaluate(kernel, "outcome") == "'stopped cleanly'"
    assert evaluate(kernel, "job.status") == "'stopped'"
