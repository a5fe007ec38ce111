"""Where a record's timings were taken: the one `hardware()` every training run and benchmark
writes beside its figures (bottom floor: it imports nothing of ours and no torch)."""

from __future__ import annotations

import platform


def hardware(threads: int) -> str:
    """"<CPU model>, N torch threads"."""
    return f"{cpu_name()}, {threads} torch thread{'s' if threads > 1 else ''}"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or f"{platform.machine()} CPU"
