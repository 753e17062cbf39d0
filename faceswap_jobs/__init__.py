"""Face Swap API jobs on Redis + Celery: submit, call with retries, store results, monitor.

The public names load on first use, so `faceswap_jobs.emulator` can run without Celery loaded.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("faceswap-jobs")
except PackageNotFoundError:  # a source tree on sys.path, not installed: no metadata to read
    __version__ = "0+unknown"

__all__ = ["Batch", "Producer", "SwapJob", "get_job", "submit_many", "submit_swap"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("faceswap_jobs.producer"), name)
    raise AttributeError(f"module 'faceswap_jobs' has no attribute {name!r}")
