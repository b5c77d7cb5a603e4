"""The frame of every workflow job script: everything the job prints goes to its log file, a job that succeeds
ends without the interpreter's teardown, and the job of a skipped analysis writes its placeholders instead."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def snakemake_job(log_path: str | os.PathLike, skipped: tuple[str, str, Sequence[str]] | None = None) -> Iterator[None]:
    """Run the block as the body of a job script: stdout and stderr (progress bars, warnings, tracebacks) go to
    `log_path` while it runs.

    When the block raises, the traceback goes to the log and the exception propagates (exit status 1). When it
    succeeds, the process ends at once with status 0: the log is closed, the atexit handlers run (logging's
    flush, multiprocessing's clean-up of loader workers) and stdout and stderr are flushed, but Python's teardown
    of every loaded module is skipped — 0.6 s per job with torch loaded, 0.9 s with timm (docs/performance.md).
    Whatever the job writes must therefore be closed inside the block, as every `with open(...)` is.

    `skipped`, (analysis, reason, outputs), is a skipped analysis (simcon.needs): the block does not run; the job
    writes its outputs as placeholders that give the reason, logs it, and ends with status 0 as one that succeeds.
    """
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            if skipped is None:
                yield
            else:
                from simcon.needs import write_skipped

                write_skipped(skipped[2], skipped[0], skipped[1])
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def analysis_job(job: Any) -> contextlib.AbstractContextManager[None]:
    """snakemake_job for the script of an analysis of simcon.needs.NEEDS (`job` is its `snakemake` object): skipped,
    with placeholders for its outputs, where its rule's param `skipped` gives a reason."""
    reason = job.params.skipped
    return snakemake_job(job.log[0], skipped=(job.rule, reason, list(job.output)) if reason else None)
