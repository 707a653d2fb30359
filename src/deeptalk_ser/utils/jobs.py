"""How an entry script's Hydra job ends when it fails: one line for the user, the same line in
the job's own log and ``error.json`` in its folder, and, inside a multirun, the sweep going on.

Hydra's basic sweeper re-raises the first failed job after its batch and skips
``on_multirun_end``, and a ``SystemExit`` stops the sweep at once: either way the jobs after a
bad value never run and no summary is written. A failed job of a multirun therefore returns
normally (objective NaN, which Optuna records as a failed trial) after recording its error; the
sweep summary (``runs/sweep_summary.py``) lists it and the sweep exits with status 1.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

from deeptalk_ser.utils.errors import user_error_in
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.processes import die_with_launching_rank

T = TypeVar("T")
log = logging.getLogger("deeptalk_ser")
ERROR_FILE = "error.json"


def hydra_job() -> tuple[Path | None, bool]:
    """(this job's output folder, whether it runs inside a multirun); (None, False) outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    except Exception:  # not inside a Hydra job (a direct call of a run function)
        return None, False


def error_line(exc: BaseException) -> tuple[str, bool]:
    """(the one line that says what went wrong, whether it is the user's to fix)."""
    user = user_error_in(exc)
    if user is not None:
        return str(user), True
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0], False


def record_failure(job_dir: Path | None, line: str, user: bool, exc: BaseException) -> None:
    """The error into the job's log (with the traceback when it is a bug) and its ``error.json``."""
    log.error("job failed: %s", line, exc_info=None if user else exc)
    if job_dir is None:
        return
    try:
        write_json_atomic(job_dir / ERROR_FILE, {
            "error": line, "user_error": user, "type": type(exc).__name__,
            "traceback": None if user else "".join(traceback.format_exception(exc))})
    except OSError as write_exc:  # e.g. the disk that failed the job is full: the log line stands
        log.error("could not write %s: %s", job_dir / ERROR_FILE, write_exc)


def run_job(script: str, job: Callable[[], T]) -> T | None:
    """Run ``job``; on failure print ``<script>: error: <where>: <problem>`` and record it.
    A single run exits with status 1 for a user error (``HYDRA_FULL_ERROR=1`` keeps the
    traceback) and re-raises a bug; a multirun job returns None so the sweep goes on."""
    die_with_launching_rank()  # a DDP rank Lightning started never outlives rank 0
    try:
        return job()
    except Exception as exc:
        job_dir, multirun = hydra_job()
        line, user = error_line(exc)
        record_failure(job_dir, line, user, exc)
        if multirun:
            where = f" (job {job_dir.name}; the sweep goes on)" if job_dir else ""
            if not user or os.environ.get("HYDRA_FULL_ERROR") == "1":
                traceback.print_exception(exc, file=sys.stderr)
            print(f"{script}: error: {line}{where}", file=sys.stderr, flush=True)
            return None
        if not user or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{script}: error: {line}\n(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def objective(results: dict[str, Any] | None, *keys: str) -> float:
    """The value a sweeper optimises: the first of ``keys`` in ``results``, NaN for a failed job."""
    if not results:
        return float("nan")
    return float(next((results[k] for k in keys if results.get(k) is not None), float("nan")))
