"""The kernel end of the compound sidebar: a comm that pushes snapshots and takes Cancel clicks.

Transport (no server port, no files): the comm target `compound`. On registration the kernel opens one
"announcement" comm, so a sidebar already watching this kernel learns at once that compound is loaded; each sidebar
then opens a comm of its own to the target (the announcement can be closed by any frontend without the extension,
e.g. VS Code, which would end it for everyone). A sidebar that connects later (page reload, notebook opened later)
sees an open `compound` comm in `comm_info_reply` and opens its own. Snapshots go to every open comm.

Messages, kernel -> frontend: {"type": "snapshot", models, jobs, device, pid, time} (see snapshot.py) and
{"type": "cancelled", "job_id", "ok", "error"}. Frontend -> kernel: {"type": "cancel", "job_id"} and
{"type": "refresh", "interval_s"}: a sidebar asks for a snapshot at least every `interval_s` seconds (its refresh
interval), and that doubles as its heartbeat. A page that reloads or closes never says goodbye, so a comm not heard
from for `lease_s` (at least three of its intervals, and at least `min_lease_s`, since browsers slow the timers of
background tabs to one a minute) is dropped: the kernel stops feeding pages that are gone.

Threads: snapshots are built and sent by one daemon thread, at most every `min_gap_s`, when something changed
or every `heartbeat_s`; job changes only set an Event, so the job's own thread never waits on us. Cancel arrives on
whatever thread ipykernel dispatches the comm message on: a kernel subshell, or the main shell, where compound's own
waits (`job.result()`) handle it while a cell blocks (`compound.jupyter.pump`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from compound.jupyter.snapshot import find_job, kernel_snapshot

COMM_TARGET = "compound"
log = logging.getLogger(__name__)


class KernelBridge:
    """Keeps every open `compound` comm fed with rate-limited kernel snapshots."""

    def __init__(self, min_gap_s: float = 0.25, heartbeat_s: float = 5.0, poll_s: float = 1.0,
                 min_lease_s: float = 180.0):
        self.min_gap_s = min_gap_s
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.min_lease_s = min_lease_s
        self._comms: dict[str, Any] = {}
        self._leases: dict[str, float] = {}  # frontend comm id -> monotonic time after which it counts as gone
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._force = False
        self._last_payload: dict[str, Any] | None = None
        self._jobs_unsubscribe = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.sent = 0  # number of snapshots sent, for tests and the curious
        self._warned = False

    # -- comms ---------------------------------------------------------------------------------------------
    def register(self, comm_manager: Any = None, create_comm: Any = None, *, announce: bool = True) -> None:
        """Register the comm target and, with `announce`, tell frontends this kernel has compound (idempotent)."""
        import comm as comm_package

        manager = comm_manager or comm_package.get_comm_manager()
        manager.register_target(COMM_TARGET, self._on_frontend_open)
        if announce:
            self.attach((create_comm or comm_package.create_comm)(target_name=COMM_TARGET, data=kernel_snapshot()))

    def attach(self, comm: Any, *, lease_s: float | None = None) -> None:
        """Feed `comm` snapshots; with `lease_s`, drop it unless the frontend speaks again within that time."""
        comm.on_msg(lambda msg, comm_id=comm.comm_id: self._on_msg(msg, comm_id))
        comm.on_close(lambda _msg, comm_id=comm.comm_id: self._detach(comm_id))
        with self._lock:
            self._comms[comm.comm_id] = comm
            if lease_s is not None:
                self._leases[comm.comm_id] = time.monotonic() + lease_s
        self._ensure_thread()
        self.push(force=True)

    def _on_frontend_open(self, comm: Any, open_msg: dict) -> None:
        data = open_msg.get("content", {}).get("data", {}) or {}
        self.attach(comm, lease_s=self._lease_for(data))

    def _lease_for(self, data: dict) -> float:
        interval = data.get("interval_s")
        interval = float(interval) if isinstance(interval, (int, float)) and interval > 0 else self.heartbeat_s
        return max(self.min_lease_s, 3 * interval)

    def _detach(self, comm_id: str) -> None:
        with self._lock:
            self._comms.pop(comm_id, None)
            self._leases.pop(comm_id, None)

    def drop_silent_comms(self, now: float | None = None) -> list[str]:
        """Close the frontend comms whose lease ran out (pages reloaded or closed); returns their ids."""
        now = time.monotonic() if now is None else now
        with self._lock:
            gone = [comm_id for comm_id, until in self._leases.items() if until < now]
            comms = [self._comms.pop(comm_id) for comm_id in gone if comm_id in self._comms]
            for comm_id in gone:
                self._leases.pop(comm_id, None)
        for comm in comms:
            try:
                comm.close()
            except Exception:  # the kernel may be shutting down
                log.debug("closing a silent compound comm failed", exc_info=True)
        return gone

    @property
    def comm_ids(self) -> list[str]:
        with self._lock:
            return list(self._comms)

    # -- frontend -> kernel ------------------------------------------------------------------------------
    def _on_msg(self, msg: dict, comm_id: str | None = None) -> None:
        data = msg.get("content", {}).get("data", {}) or {}
        kind = data.get("type")
        with self._lock:
            if comm_id in self._leases:  # the page is alive: renew its lease
                self._leases[comm_id] = time.monotonic() + self._lease_for(data)
        if kind == "cancel":
            self._broadcast(self.cancel(str(data.get("job_id", ""))))
            self.push(force=True)
        elif kind == "refresh":
            self.push(force=True)
        else:
            log.warning("compound sidebar sent an unknown message type %r; expected 'cancel' or 'refresh'", kind)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a job by id; returns the reply sent to frontends."""
        job = find_job(job_id)
        if job is None:
            return {"type": "cancelled", "job_id": job_id, "ok": False, "error": f"no job with id {job_id!r}"}
        try:
            job.stop()
        except Exception as exc:  # the sidebar shows the reason instead of the kernel log swallowing it
            return {"type": "cancelled", "job_id": job_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"type": "cancelled", "job_id": job_id, "ok": True, "error": None}

    # -- kernel -> frontend ------------------------------------------------------------------------------
    def push(self, force: bool = False) -> None:
        """Ask the publisher thread for a snapshot soon; never blocks the caller."""
        if force:
            self._force = True
        self._wake.set()

    def _broadcast(self, payload: dict[str, Any]) -> None:
        with self._lock:
            comms = list(self._comms.values())
        for comm in comms:
            try:
                comm.send(payload)
            except Exception:  # a closed or broken comm must not stop the others
                log.debug("compound comm send failed", exc_info=True)

    def publish_once(self) -> bool:
        """Build a snapshot and send it if it changed (or a push was forced). Returns whether it sent."""
        self._subscribe_jobs()
        payload = kernel_snapshot()
        comparable = {k: v for k, v in payload.items() if k != "time"}
        # RSS drifts by a few pages all the time: only a 1% move counts as a change.
        if self._last_payload is not None and not self._force:
            last = self._last_payload
            same_device = abs(comparable["device"]["used_bytes"] - last["device"]["used_bytes"]) < 0.01 * max(
                1, last["device"]["used_bytes"]
            )
            if same_device and comparable["models"] == last["models"] and comparable["jobs"] == last["jobs"]:
                return False
        self._force = False
        self._last_payload = comparable
        self._broadcast(payload)
        self.sent += 1
        return True

    def _subscribe_jobs(self) -> None:
        # compound.jobs may be imported after the bridge starts: subscribe as soon as it exists.
        jobs = sys.modules.get("compound.jobs")
        if self._jobs_unsubscribe is None and jobs is not None:
            self._jobs_unsubscribe = jobs.subscribe(lambda _job: self._wake.set())

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopped.clear()
            self._thread = threading.Thread(target=self._run, name="compound-sidebar-publisher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        last_sent = 0.0
        while not self._stopped.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            self.drop_silent_comms()
            if not self.comm_ids:
                continue
            gap = self.min_gap_s - (time.monotonic() - last_sent)
            if gap > 0:
                time.sleep(gap)  # rate limit: bursts of job updates collapse into one snapshot
            if time.monotonic() - last_sent > self.heartbeat_s:
                self._force = True
            try:
                if self.publish_once():
                    last_sent = time.monotonic()
            except Exception:  # a bad snapshot (e.g. a model mid-load) must not kill the publisher
                # Said once per kernel: this thread's log lands in whichever cell runs, so it must not repeat.
                (log.debug if self._warned else log.warning)("compound sidebar snapshot failed", exc_info=True)
                self._warned = True

    def close(self) -> None:
        """Stop publishing and close every comm (used by tests and %unload_ext)."""
        self._stopped.set()
        self._wake.set()
        if self._jobs_unsubscribe is not None:
            self._jobs_unsubscribe()
            self._jobs_unsubscribe = None
        with self._lock:
            comms, self._comms = list(self._comms.values()), {}
        for comm in comms:
            try:
                comm.close()
            except Exception:  # already gone with its kernel or frontend
                log.debug("closing a compound comm failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=2)
