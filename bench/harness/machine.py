"""Describe the machine and its load, for the report."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line
    except OSError:
        pass
    return "?"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def describe() -> dict[str, Any]:
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    os_name = _first("/etc/os-release", "PRETTY_NAME=")
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else None,
        "kernel": platform.release(),
        "os": os_name.split("=", 1)[-1].strip('"'),
        "python": platform.python_version(),
        "virtualization": _virtualization(),
    }


def _virtualization() -> str:
    flags = _first("/proc/cpuinfo", "flags")
    return "virtual machine (hypervisor flag set)" if "hypervisor" in flags.split() else "none seen"
