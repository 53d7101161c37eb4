"""A daemon thread that repeats one piece of work at a fixed interval until stopped."""

from __future__ import annotations

import threading


class Periodic:
    """Call ``step()`` now and then every ``interval`` seconds, in a background thread, until ``stop()``."""

    def __init__(self, name: str, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.interval)
