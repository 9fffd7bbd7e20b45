"""A daemon thread that does one thing every few seconds until it is stopped."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class Periodic(ABC):
    """Calls :meth:`tick` every ``interval`` seconds (first at once when
    ``immediately``, else after one interval) until :meth:`stop`; then
    :meth:`finish`, on the same thread."""

    def __init__(self, name: str, interval: float, *, immediately: bool = False) -> None:
        self.interval = interval
        self._immediately = immediately
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abstractmethod
    def tick(self) -> None:
        """One turn; an exception ends the thread, so catch what is expected."""

    def finish(self) -> None:  # noqa: B027 -- optional: most have nothing to give back
        """After the last turn (e.g. give back what the turns took)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            if self._immediately:
                self.tick()
            while not self._stop.wait(self.interval):
                self.tick()
        finally:
            self.finish()
