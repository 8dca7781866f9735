"""The kernel bridge in-process: snapshots, rate limiting and Cancel, over comms that record what they send."""

from __future__ import annotations

import threading
import time

import comm.base_comm
import pytest

from compound import jobs
from compound.jupyter import COMM_TARGET, KernelBridge, kernel_snapshot


class RecordingComm(comm.base_comm.BaseComm):
    """A comm whose messages land in a list instead of a kernel's IOPub socket."""

    def __init__(self, **kwargs):
        self.published: list[tuple[str, dict]] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.published.append((msg_type, data))

    def snapshots(self) -> list[dict]:
        return [d for t, d in self.published if t == "comm_msg" and d.get("type") == "snapshot"]

    def replies(self) -> list[dict]:
        return [d for t, d in self.published if t == "comm_msg" and d.get("type") == "cancelled"]

    def frontend_sends(self, data: dict) -> None:
        self.handle_msg({"content": {"comm_id": self.comm_id, "data": data}})


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def loop_until_stopped(job):
    while not job.stop_requested:
        job.update(progress=0.5, detail="working")
        time.sleep(0.01)
    return "kept best so far"


@pytest.fixture
def bridge():
    manager = comm.base_comm.CommManager()
    bridge = KernelBridge(min_gap_s=0.05, heartbeat_s=60.0, poll_s=0.05)
    opened: list[RecordingComm] = []

    def create_comm(**kwargs):
        opened.append(RecordingComm(**kwargs))
        return opened[-1]

    bridge.register(comm_manager=manager, create_comm=create_comm)
    bridge.manager, bridge.announce = manager, opened[0]
    yield bridge
    bridge.close()


def test_snapshot_has_models_jobs_and_device_memory():
    snap = kernel_snapshot()
    assert snap["type"] == "snapshot"
    assert isinstance(snap["models"], list) and isinstance(snap["jobs"], list)
    assert snap["device"]["kind"] in {"cpu", "cuda"}
    assert snap["device"]["used_bytes"] > 10_000_000  # a Python process with pytest loaded


def test_register_opens_an_announce_comm_with_a_snapshot_and_the_target(bridge):
    open_msgs = [d for t, d in bridge.announce.published if t == "comm_open"]
    assert open_msgs and open_msgs[0]["type"] == "snapshot"
    assert bridge.announce.target_name == COMM_TARGET
    assert COMM_TARGET in bridge.manager.targets
    assert bridge.comm_ids == [bridge.announce.comm_id]


def test_running_job_appears_and_cancel_stops_it(bridge):
    job = jobs.start(loop_until_stopped, name="bridge-cancel", kind="test")
    try:
        assert wait_for(lambda: any(j["id"] == job.id and j["status"] == "running"
                                    for s in bridge.announce.snapshots() for j in s["jobs"]))
        bridge.announce.frontend_sends({"type": "cancel", "job_id": job.id})
        assert job.wait(10), "cancel did not end the job"
        assert job.status == "stopped" and job.result() == "kept best so far"
        assert {"type": "cancelled", "job_id": job.id, "ok": True, "error": None} in bridge.announce.replies()
        assert wait_for(lambda: any(j["id"] == job.id and j["status"] == "stopped"
                                    for j in bridge.announce.snapshots()[-1]["jobs"]))
    finally:
        job.stop()


def test_cancel_of_unknown_job_says_so(bridge):
    bridge.announce.frontend_sends({"type": "cancel", "job_id": "no-such-job"})
    (reply,) = bridge.announce.replies()
    assert reply["ok"] is False and "no-such-job" in reply["error"]


def test_frontend_opened_comm_gets_a_snapshot_and_close_detaches_it(bridge):
    frontend = RecordingComm(target_name=COMM_TARGET, primary=False)
    bridge.manager.targets[COMM_TARGET](frontend, {"content": {"data": {}}})
    assert wait_for(lambda: frontend.snapshots())
    frontend.handle_close({"content": {"comm_id": frontend.comm_id, "data": {}}})
    assert frontend.comm_id not in bridge.comm_ids


def test_bursts_of_job_updates_are_rate_limited(bridge):
    bridge.min_gap_s = 0.2
    before = bridge.sent

    def chatty(job):
        for i in range(400):  # ~2 s of updates every 5 ms
            job.update(progress=i / 400, detail=f"step {i}")
            time.sleep(0.005)

    job = jobs.start(chatty, name="chatty", kind="test")
    assert job.wait(30)
    wait_for(lambda: bridge.announce.snapshots()[-1]["jobs"][-1]["status"] == "done", timeout=5)
    sent = bridge.sent - before
    # One snapshot per 0.2 s at most (plus slack for the start/finish edges), not one per update.
    assert 2 <= sent <= 2.5 / 0.2 + 4, sent


def test_a_slow_frontend_never_blocks_the_job_thread(bridge):
    """Job updates only set an event: a comm whose send blocks must not hold the job back."""
    gate = threading.Event()
    original_send = bridge.announce.send
    bridge.announce.send = lambda *a, **k: (gate.wait(30), original_send(*a, **k))
    job = jobs.start(lambda job: [job.update(progress=i / 50) for i in range(50)], name="fast", kind="test")
    assert job.wait(20) and not gate.is_set()  # the job ended while the frontend's send was still stuck
    gate.set()


def test_frontend_comms_that_stop_speaking_are_dropped_and_speaking_renews_the_lease(bridge):
    import time as clock

    bridge.min_lease_s = 10.0
    pages = []
    for _ in range(2):
        page = RecordingComm(target_name=COMM_TARGET, primary=False)
        bridge.manager.targets[COMM_TARGET](page, {"content": {"data": {"type": "refresh", "interval_s": 2}}})
        pages.append(page)
    alive, reloaded = pages
    assert set(bridge.comm_ids) >= {alive.comm_id, reloaded.comm_id}
    # Eight seconds later only `alive` has spoken (its refresh doubles as a heartbeat); `reloaded` is gone.
    later = clock.monotonic() + 8
    bridge._leases[alive.comm_id] = later + bridge._lease_for({"interval_s": 2})
    assert bridge.drop_silent_comms(now=later) == []  # the control case: within the lease nothing is dropped
    assert bridge.drop_silent_comms(now=later + 5) == [reloaded.comm_id]
    assert reloaded.comm_id not in bridge.comm_ids and alive.comm_id in bridge.comm_ids
    assert ("comm_close", {}) in [(t, d or {}) for t, d in reloaded.published]
    assert bridge.announce.comm_id in bridge.comm_ids  # the kernel's own announcement has no lease


def test_a_message_renews_the_lease(bridge):
    page = RecordingComm(target_name=COMM_TARGET, primary=False)
    bridge.manager.targets[COMM_TARGET](page, {"content": {"data": {"interval_s": 1}}})
    first = bridge._leases[page.comm_id]
    page.frontend_sends({"type": "refresh", "interval_s": 100})
    assert bridge._leases[page.comm_id] > first + 100  # three of its new intervals


def test_unknown_message_type_is_ignored(bridge, caplog):
    bridge.announce.frontend_sends({"type": "explode"})
    assert "unknown message type 'explode'" in caplog.text


def test_import_outside_a_kernel_stays_cheap_and_starts_nothing():
    import subprocess
    import sys

    code = "import sys, compound; print('IPython' in sys.modules, 'compound.jupyter' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["False", "False", "False"]
