"""Let a cell that waits on compound keep hearing its widgets: handle queued comm messages while the main shell blocks.

A cell blocked in `job.result()` holds the kernel's main shell. A Stop click reaches the kernel as a `comm_msg`, and
ipykernel sends a comm's messages to the shell (main or subshell) that last *sent* on that comm, which for a widget
displayed by a cell is the main shell, whatever JupyterLab's `commsOverSubshells` setting says; with the setting off
(VS Code, Colab, Notebook 7 with other settings) every comm message goes there. Either way the click would wait behind
the cell that waits for the job: a deadlock ended only by the job's own timeout.

So compound's waits call `poll_kernel()` between short waits, as jupyter-ui-poll does: it takes the messages queued for
the main shell through the stream's public `flush()`, handles comm messages (open, msg, close) at once through the
comm manager, in their order, and hands every other request (a queued `execute_request`, ...) back to the kernel's own
handler, which runs it after the current cell, in its original order. Outside a kernel's main thread it does nothing.

Supports ipykernel 7 (messages reach the main shell through the shell-channel thread's inproc pair) and 6 (the
shell stream itself).

Example:
    >>> poll_kernel()   # outside a Jupyter kernel: nothing to do
    0
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

_COMM_MESSAGES = ("comm_open", "comm_msg", "comm_close")
# Set while poll_kernel runs (only ever on the main thread): a wait inside a comm handler must not re-enter it. A flag
# set and cleared inside try/finally, not a lock: a KeyboardInterrupt can land between any two bytecodes, and a lock
# acquired just before it would stay held forever.
_polling = False
_kernel_handlers: dict[int, Any] = {}  # id(stream) -> the kernel's own receive handler, as first seen


def _main_shell_stream(kernel: Any) -> Any:
    """The ZMQStream the main shell reads its requests from, or None if this kernel has none we know."""
    channel_thread = getattr(kernel, "shell_channel_thread", None)
    if channel_thread is not None:  # ipykernel >= 7: shell channel thread -> main shell over an inproc pair
        manager = getattr(channel_thread, "manager", None)
        pair = manager.get_shell_channel_to_subshell_pair(None) if manager is not None else None
        return getattr(pair, "to_stream", None)
    return getattr(kernel, "shell_stream", None)  # ipykernel 6


def _kernel_on_main_thread() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None)


def poll_kernel() -> int:
    """Handle the comm messages queued for the blocked main shell; returns how many were handled.

    Call it from a wait loop on the kernel's main thread (compound's `Job.wait()` and `Job.result()` do).
    Requests other than comm messages are deferred to the kernel, in order, after the running cell.
    """
    global _polling
    kernel = _kernel_on_main_thread()
    if kernel is None or _polling:
        return 0
    try:
        _polling = True
        return _poll(kernel)
    finally:
        _polling = False
_kernel_handlers: dict[int, Any] = {}  # id(stream) -> the kernel's own receive handler, as first seen


def _poll(kernel: Any) -> int:
    import zmq

    stream = _main_shell_stream(kernel)
    if stream is None:
        return 0
    # The kernel's own handler, to hand back the rest: remembered the first time, so that a poll an interrupt cut
    # short (our collector still installed) cannot pass the collector off as the kernel's handler.
    dispatch = _kernel_handlers.setdefault(id(stream), getattr(stream, "_recv_callback", None))
    if dispatch is None:
        return 0
    queued: list[Any] = []
    try:
        stream.on_recv(queued.append, copy=False)
        try:
            stream.flush(zmq.POLLIN)  # take what is queued now, without waiting
        finally:
            stream.on_recv(dispatch, copy=False)
    finally:
        # Even when an interrupt cut the flush short, every message taken off the queue is handled or handed back.
        handled = _handle_all(kernel, stream, dispatch, queued)
    return handled


def _handle_all(kernel: Any, stream: Any, dispatch: Any, queued: list[Any]) -> int:
    handled = 0
    for position, raw in enumerate(queued):
        try:
            if _handle_comm_message(kernel, stream, raw):
                handled += 1
            else:
                _defer(dispatch, raw)
        except BaseException:  # an interrupt inside a handler: the messages after it still reach the kernel
            for rest in queued[position + 1:]:
                _defer(dispatch, rest)
            raise
    return handled


def _handle_comm_message(kernel: Any, stream: Any, raw: list[Any]) -> bool:
    session = kernel.session
    manager = getattr(kernel, "comm_manager", None)
    try:
        idents, frames = session.feed_identities(raw, copy=False)
        # Header only: a full deserialize records the signature, and the kernel refuses a message it has seen,
        # so only messages handled here are unpacked completely.
        kind = session.deserialize(frames, content=False, copy=False)["header"].get("msg_type")
        if kind not in _COMM_MESSAGES or manager is None:
            return False
        msg = session.deserialize(frames, content=True, copy=False)
    except Exception:  # not ours to judge: the kernel's handler will report it
        return False
    handler = getattr(manager, kind)
    try:
        handler(stream, idents, msg)
    except Exception:  # a failing widget handler must not end the wait
        log.warning("compound: handling a %s while waiting failed", kind, exc_info=True)
    return True


def _defer(dispatch: Any, raw: list[Any]) -> None:
    # The kernel's handler is a coroutine function run as a task on the main loop: scheduled now, it runs once the
    # current cell returns, before requests that arrive later (asyncio runs tasks and the shell lock in FIFO order).
    result = dispatch(raw)
    if asyncio.iscoroutine(result):
        asyncio.ensure_future(result)
