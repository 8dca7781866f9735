"""How fast Stop reaches a job in a real Jupyter kernel while a cell blocks on it (`python bench/stop_latency.py`).

Four ways, each timed from the moment the message leaves the frontend (here a jupyter_client on the same machine,
sending exactly what JupyterLab sends for a click) to the moment the job ended (its `ended_at`, same clock):

  idle kernel     the baseline: the JobWidget's Stop while no cell runs (the main shell handles it at once)
  subshells on    Stop while a cell blocks in job.result(), the comm message sent on a kernel subshell
                  (JupyterLab's default "commsOverSubshells": "perCommTarget")
  subshells off   the same, without a subshell (the setting off; VS Code, Colab): compound's wait handles it
  interrupt       the kernel interrupted (the ■ button) while a cell blocks in job.result()

Each is the median of `--repeats` runs, printed in ms and as a ratio to the idle-kernel baseline measured in the same
kernel. The job checks for a stop every 10 ms, as an optimizer does at its next LM call; compound's wait polls the
kernel every 20 ms. The last line is the headline.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import textwrap
import time

import jupyter_client

SETUP = """
import compound
from compound import jobs
from compound.widgets import JobWidget
from IPython.display import display
def spin(job):
    while not job.stop_requested:
        job._stop.wait(0.01)
    return "stopped"
"""
START = "job = jobs.start(spin, name='bench'); view = JobWidget(job); display(view)"


def execute(kc, code: str, timeout: float = 60) -> dict:
    reply = kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def evaluate(kc, expr: str) -> str:
    reply = kc.execute_interactive("", user_expressions={"x": expr}, timeout=30, output_hook=lambda m: None)
    return reply["content"]["user_expressions"]["x"]["data"]["text/plain"]


def shell_reply(kc, msg_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def drain_iopub(kc) -> None:
    while True:
        try:
            kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            return


def wait_busy(kc, msg_id: str) -> None:
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy"
                and msg["parent_header"].get("msg_id") == msg_id):
            return


def send_stop(kc, comm_id: str, subshell_id: str | None) -> None:
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": {"type": "stop"}}})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)


def create_subshell(kc) -> str:
    kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
    return kc.control_channel.get_msg(timeout=30)["content"]["subshell_id"]


def job_ended_after(kc, sent: float) -> float:
    return float(evaluate(kc, "job.ended_at")) - sent


def idle_stop(kc) -> float:
    execute(kc, START)
    comm_id = evaluate(kc, "view.comm.comm_id").strip("'")
    sent = time.time()
    send_stop(kc, comm_id, None)
    execute(kc, "job.wait(60)")
    return job_ended_after(kc, sent)


def blocked_stop(kc, subshell_id: str | None) -> float:
    execute(kc, START)
    comm_id = evaluate(kc, "view.comm.comm_id").strip("'")
    drain_iopub(kc)
    blocking = kc.execute("job.result(timeout=60)")
    wait_busy(kc, blocking)
    sent = time.time()
    send_stop(kc, comm_id, subshell_id)
    reply = shell_reply(kc, blocking)
    assert reply["content"]["status"] == "ok", reply["content"]
    return job_ended_after(kc, sent)


def run_on_subshell(kc, subshell_id: str, expr: str) -> str:
    content = dict(code="", silent=False, store_history=False, user_expressions={"x": expr}, allow_stdin=False,
                   stop_on_error=False)
    msg = kc.session.msg("execute_request", content)
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return shell_reply(kc, msg["header"]["msg_id"])["content"]["user_expressions"]["x"]["data"]["text/plain"]


IN_WAIT = ("any(frame.name == '_wait_listening' for frame in __import__('traceback').extract_stack("
           "__import__('sys')._current_frames()[__import__('threading').main_thread().ident]))")


def interrupted_stop(kc, manager, subshell_id: str) -> float:
    execute(kc, START)
    drain_iopub(kc)
    blocking = kc.execute("job.result(timeout=60)")
    # "busy" comes before ipykernel takes SIGINT for the cell: interrupt once its main thread is inside the wait
    # (asked on a subshell, which runs while the main shell is busy).
    while run_on_subshell(kc, subshell_id, IN_WAIT) != "True":
        pass
    sent = time.time()
    manager.interrupt_kernel()
    reply = shell_reply(kc, blocking)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert evaluate(kc, "job.status") == "'stopped'"
    return job_ended_after(kc, sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="3 repeats (under a minute)")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats

    manager, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        execute(kc, SETUP, timeout=120)
        subshell = create_subshell(kc)
        ways = {
            "idle kernel (baseline)": lambda: idle_stop(kc),
            "cell blocked, subshells on": lambda: blocked_stop(kc, subshell),
            "cell blocked, subshells off": lambda: blocked_stop(kc, None),
            "cell blocked, kernel interrupt": lambda: interrupted_stop(kc, manager, subshell),
        }
        medians = {}
        for _ in range(repeats):  # interleaved, so every way sees the same machine load
            for name, measure in ways.items():
                medians.setdefault(name, []).append(measure())
        medians = {name: statistics.median(times) for name, times in medians.items()}
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)

    baseline = medians["idle kernel (baseline)"]
    print(f"Stop latency in a real kernel, median of {repeats} (ratio to Stop on an idle kernel):")
    for name, seconds in medians.items():
        print(f"  {name:32s} {seconds * 1000:7.1f} ms  {seconds / baseline:5.1f}x")
    worst = max(medians, key=medians.get)
    print(f"Stop reaches a blocked cell's job in at most {medians[worst] * 1000:.0f} ms ({worst}), "
          f"{medians[worst] / baseline:.1f}x an idle kernel's {baseline * 1000:.0f} ms")


if __name__ == "__main__":
    main()
