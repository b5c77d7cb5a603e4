"""Logging for workflow jobs: everything a job prints goes to its log file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[None]:
    """Send stdout and stderr (progress bars, warnings, tracebacks) to `path` while the job runs."""
    with open(path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
