"""How our processes run, in one place: how they exit, the garbage collector, environment
defaults, the standard streams, and work done on a thread meanwhile. Each tweak says what it
does and why; the speed tweaks are kept because `scripts/bench/process_policy.py` shows they
pay (medians on a 2-core machine, quiet unless said):

- Exit (`exit_without_teardown`): once every exit handler has run (Ray's shutdown, the
  trackers' last writes), the command ends with ``os._exit`` instead of Python's teardown of
  its modules, which keeps nothing safe by then (every file is written and closed, the study
  committed). A process that loaded Ray, Optuna, sklearn, pandas and torch took 0.76 s from
  the end of its work to its end, 0.05 s this way (2.61 s against 0.12 s on a busy machine).
- Garbage collector at exit (`skip_collection_at_exit`): where we do not own the process's
  exit (the Hydra sweeper runs inside someone's app), the collector is frozen at exit instead,
  so Python's last search for garbage among every loaded module's objects is skipped: 0.76 s
  down to 0.17 s (2.61 s to 0.41 s). Python promises no finalizer for an object alive at exit.
- Garbage collector in a trial's worker (`collect_and_freeze_once`): a worker collects after
  each trial (what a trial left, the GPU's cache with it); after the first, what survives
  (imported modules, the objective's caches) is frozen out of the collector's sight. A full
  collection of a process that loaded the above took 154 ms (692 ms on a busy machine), 0.0 ms
  after ``gc.freeze()``.
- Work on a thread meanwhile (`Ahead`), where no two threads import one package (they can
  deadlock, or one sees the package half-initialised; an import hook in the benchmark records
  the packages each thread imports from, and found none shared in either case):
  - while a local Ray starts (seconds spent mostly waiting for its processes), the modules the
    study needs later (the database layer, sklearn, the GP's libraries, matplotlib) are
    imported on a thread (`imports_ahead`), after the main thread has imported what both would
    (`IMPORTED_FIRST`, and Ray Tune's search module, which loads pandas and numpy): 5.02 s one
    after the other, 3.84 s overlapped on a quiet machine (on one whose cores were busy with
    other work it did not pay: 8.96 s against 9.09 s);
  - at a study's end Ray's processes take seconds to stop, mostly waiting; Ray's shutdown on a
    thread overlaps the summary, files and plots: 1.77 s one after the other, 1.49 s
    overlapped (3.99 s against 1.69 s on the busy machine).
- Environment defaults (`set_defaults` with the maps below): settings Ray, Ray Tune and MLflow
  read from the environment, set only where the user has not set them, just before the library
  reads them. Behaviour, not speed: each map says what it changes.
- The file-creation mask (`umask`): read once, where Linux reports it without changing it;
  elsewhere it can only be read by setting it and putting it back, done once, on first use
  (never at import). Files we write through a temporary file get the mode a plain ``open()``
  would have given them.
- The standard streams (`swapped_streams`): while a command prints what others wrote (a
  trial's error text, a stored study's attributes, Ray's copies of the workers' lines),
  ``sys.stdout`` and ``sys.stderr`` are wrapped in `RedactingStream`, which scrubs every known
  secret, and put back afterwards. Behaviour, not speed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# -- exit --------------------------------------------------------------------------------------


def exit_without_teardown(main: Callable[[], None]) -> None:
    """Run ``main``; when the process then exits, after every exit handler registered meanwhile
    has run, end it with ``main``'s exit code and no teardown. When ``main`` ended with an
    exception other than SystemExit, Python exits as usual (its traceback, exit code 1)."""
    ended: list[int] = []  # main's exit code, once it is known

    def leave() -> None:
        if not ended:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed stream has nothing left to write
                continue
        os._exit(ended[0])

    atexit.register(leave)  # registered first, so it runs after all the others
    try:
        main()
    except SystemExit as exc:
        ended.append(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)
        raise
    ended.append(0)


# -- garbage collector -------------------------------------------------------------------------


def skip_collection_at_exit() -> None:
    """From now on, Python's exit skips its search for garbage (see the module's docstring)."""
    atexit.register(gc.freeze)


def collect_and_freeze_once() -> None:
    """Collect what the last trial left; after the first, freeze what survives."""
    gc.collect()
    if gc.get_freeze_count() == 0:
        gc.freeze()


# -- environment defaults ----------------------------------------------------------------------

RAY_DRIVER_ENV = {
    # Our trainable reports its own outcome keys and checks metrics itself (trial_runner.Reporter).
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "1",
    # Trials keep the driver's working directory, so relative paths in a config still resolve.
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # Ray Tune's own Ctrl-C handler stays off: run_control.InterruptWatch stops the run
    # through the stopper.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # A local Ray's workers, and so the trials, run at the priority of the command that started
    # the study. Ray's own default lowers them by 15, and then any other busy process starves
    # them: a sweep's first trial took minutes instead of a second beside two busy processes.
    "RAY_worker_niceness": "0",
}
"""Set before Ray starts in the driver (`execution.ray_session.ensure_ray`)."""

RAY_WORKER_LINES_ENV = {
    "RAY_DISABLE_WORKER_LOG_PREFIX": "1",  # the lines carry our prefix instead of Ray's
    "RAY_DEDUP_LOGS": "0",  # "hello from trial" is printed by every trial, not once
}
"""Set in the Hydra sweeper's driver before Ray is imported (read then): the workers' lines are
printed unchanged (`sweeper.console`)."""

HANDOVER_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # documented in Ray Tune's environment variables
HANDOVER_S = 120
TRIAL_WORKER_ENV = {HANDOVER_ENV: str(HANDOVER_S)}
"""Set in a trial's worker: with ``reuse_actors`` Ray Tune waits this long (2 s by default) for
the previous trial's function to end before it hands the worker to the next trial; a stopped
trial freeing a big model on a busy machine takes longer, and Tune then loses the new trial
(`execution.lost_trials`). Tune reads it in the worker at the hand-over."""

MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
"""Set before MLflow's client is made: a tracking server that is down costs seconds, not the
minutes of MLflow's own retries (the study goes on without it), and MLflow prints no run URLs
of its own."""


def set_defaults(env: Mapping[str, str]) -> None:
    """Set each variable of ``env`` that the user has not set."""
    for key, value in env.items():
        os.environ.setdefault(key, value)


# -- the file-creation mask --------------------------------------------------------------------

_umask_lock = threading.Lock()


@functools.cache
def umask() -> int:
    """The process's file-creation mask (see the module's docstring)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


# -- the standard streams ----------------------------------------------------------------------


@contextlib.contextmanager
def swapped_streams(stdout: Any, stderr: Any) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` are these while the block runs; what they hold is
    flushed and the previous streams are put back afterwards, whatever happens."""
    previous = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        yield
    finally:
        for stream in (stdout, stderr):
            with contextlib.suppress(Exception):  # a closed target has nothing left to take
                stream.flush()
        sys.stdout, sys.stderr = previous


def redacted_streams() -> contextlib.AbstractContextManager[None]:
    """Both streams scrubbed of every known secret while the block runs."""
    from ugro_hpo.security.streams import RedactingStream

    return swapped_streams(RedactingStream(sys.stdout), RedactingStream(sys.stderr))


# -- work on a thread meanwhile ----------------------------------------------------------------


class Ahead:
    """Work started on a daemon thread while the caller does something else; `result` waits
    for it and raises what it raised. A daemon thread, so a caller that fails first is not
    kept waiting for it at exit. The work must import nothing the caller may import
    meanwhile (see the module's docstring)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ugro-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


IMPORTED_FIRST = ("ctypes.util",)
"""What Ray's start imports from a package that the modules a study imports ahead of need also
import from (the benchmark's import hook recorded ctypes from both threads): imported before
the thread starts, so that each thread then imports from packages of its own only."""


def imports_ahead(work: Callable[[], None], first: Sequence[str] = ()) -> Ahead:
    """Run ``work`` (imports of modules needed later) on a thread while the caller goes on.
    The caller's thread first imports `IMPORTED_FIRST` and ``first`` (what it will import
    meanwhile that ``work`` may import too)."""
    for name in (*IMPORTED_FIRST, *first):
        importlib.import_module(name)
    return Ahead(work)


def import_quietly(*modules: str) -> None:
    """Import ``modules`` ahead of need; a failure is left for the import that needs the
    module, which can say what failed."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            continue
