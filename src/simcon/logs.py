"""The frame of every workflow job script: everything the job prints goes to its log file, and a job that
succeeds ends without the interpreter's teardown."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def snakemake_job(log_path: str | os.PathLike) -> Iterator[None]:
    """Run the block as the body of a job script: stdout and stderr (progress bars, warnings, tracebacks) go to
    `log_path` while it runs.

    When the block raises, the traceback goes to the log and the exception propagates (exit status 1). When it
    succeeds, the process ends at once with status 0: the log is closed, the atexit handlers run (logging's
    flush, multiprocessing's clean-up of loader workers) and stdout and stderr are flushed, but Python's teardown
    of every loaded module is skipped — 0.6 s per job with torch loaded, 0.9 s with timm (docs/performance.md).
    Whatever the job writes must therefore be closed inside the block, as every `with open(...)` is.
    """
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
