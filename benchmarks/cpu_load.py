"""CPU the rest of the machine uses while a benchmark runs: on a 2-core box a busy neighbour
slows whichever side runs beside it, so every benchmark reports it and can wait for quiet."""

from __future__ import annotations

import os
import time
from pathlib import Path


def machine_busy_seconds() -> float:
    """The machine's busy CPU time so far (/proc/stat), in seconds; 0 where /proc is missing."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU used by other processes while a block runs, in cores (0 on a quiet machine).

    The machine's busy time minus this process's own CPU time.
    """

    def __enter__(self):
        self._start, self.cores = (machine_busy_seconds(), sum(os.times()[:4]), time.perf_counter()), 0.0
        return self

    def __exit__(self, *exc):
        machine, own, start = self._start
        wall = time.perf_counter() - start
        foreign = (machine_busy_seconds() - machine) - (sum(os.times()[:4]) - own)
        self.cores = max(0.0, foreign / wall) if wall > 0 else 0.0
