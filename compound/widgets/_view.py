"""The base of every compound widget: a thin view that copies a plain model's snapshot into synced traits.

Models change on worker threads (DSPy runs callbacks on its evaluation threads), often many times a second.
Views never touch traits from those threads directly: a change only marks the view dirty, and one daemon thread
per process copies the newest snapshot into the traits at most every `FLUSH_INTERVAL_S`. The frontend therefore
gets a bounded message rate, and a burst of changes collapses into one update.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import anywidget

FLUSH_INTERVAL_S = 0.2


class _Flusher:
    """One daemon thread that pushes dirty views' state to the frontend, throttled."""

    def __init__(self, interval: float):
        self.interval = interval
        self._dirty: dict[int, weakref.ref] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, view: ModelView) -> None:
        with self._lock:
            self._dirty[id(view)] = weakref.ref(view)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="compound-widget-flusher", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)  # gather the burst that woke us
            with self._lock:
                self._wake.clear()
                dirty, self._dirty = self._dirty, {}
            for ref in dirty.values():
                view = ref()
                if view is not None:
                    view.flush()


_flusher = _Flusher(FLUSH_INTERVAL_S)


class ModelView(anywidget.AnyWidget):
    """A widget that follows `source` (a plain model or job); subclasses map its snapshot to traits in `_state`.

    It watches its source through `source.watch(fn)` (every `Observable` and every `compound.jobs.Job` has it) and
    stops watching when it is closed, from Python or by the frontend closing its comm.
    """

    def __init__(self, source: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.source = source
        self._flush_lock = threading.Lock()
        self.flush()
        self._unwatch = source.watch(lambda *_: _flusher.mark(self))
        if self.comm is not None:
            self.comm.on_close(lambda _msg: self.close())

    def _state(self, source: Any) -> dict[str, Any]:
        raise NotImplementedError

    def flush(self) -> None:
        """Copy the source's current state into the traits now (only changed traits are sent)."""
        with self._flush_lock:
            state = self._state(self.source)
            changed = {key: value for key, value in state.items() if getattr(self, key) != value}
            if changed:
                with self.hold_sync():
                    for key, value in changed.items():
                        setattr(self, key, value)

    def close(self) -> None:
        """Stop following the source and close the comm (the frontend's view goes away)."""
        unwatch = getattr(self, "_unwatch", None)
        if unwatch is not None:
            unwatch()
            self._unwatch = None
        super().close()

    @property
    def following(self) -> bool:
        """Whether this view still watches its source (False once closed)."""
        return getattr(self, "_unwatch", None) is not None

    def __repr__(self) -> str:
        # Stable text: it becomes the text/plain fallback of the displayed widget (what nbval and plain
        # frontends see), so it names the source rather than showing state that changes every run.
        source = self.source
        label = next((v for v in (getattr(source, a, None) for a in ("name", "description", "title")) if v), None)
        return f"{type(self).__name__}({label or type(source).__name__!r})"
