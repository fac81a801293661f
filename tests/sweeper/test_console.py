"""The sweep's console: each trial's output ends with a line of its own, which the driver takes
off its console and waits for before Ray goes (`ugro_hpo.sweeper.console`)."""

from __future__ import annotations

import io
import sys
import threading

from ugro_hpo.optimize import protocol as p
from ugro_hpo.sweeper.console import MarkerFilter, TrialOutputs, echoed, end_of_output
from ugro_hpo.trial_events import TrialEnd, TrialStart

TOKEN = "5e1f0c0ffee"


def _ran(outputs: TrialOutputs, number: int, error: str | None = None) -> None:
    trial_id = f"t{number}"
    outputs.trial_started(TrialStart(trial_id, number, {}))
    state = "complete" if error is None else "failed"
    outputs.trial_finished(TrialEnd(trial_id, number, state, error=error))


def test_a_trial_s_echo_ends_with_its_end_of_output_on_both_streams() -> None:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with echoed(7, TOKEN):
            print("hello", end="")  # a line without its end yet, finished by the echo
            print("oops", file=sys.stderr)
    finally:
        sys.stdout, sys.stderr = saved
    assert out.getvalue() == f"[trial 7] hello\n{end_of_output(7, TOKEN)}\n"
    assert err.getvalue() == f"[trial 7] oops\n{end_of_output(7, TOKEN)}\n"


def test_the_console_drops_the_ends_of_output_and_passes_everything_else() -> None:
    outputs = TrialOutputs(TOKEN)
    console = io.StringIO()
    stream = MarkerFilter(console, outputs, "stdout")
    print("[trial 3] hello", file=stream)  # Ray prints a line, then its end, in two writes
    print(end_of_output(3, TOKEN), file=stream)
    stream.write(f"before\n{end_of_output(4, TOKEN)}\nafter\n")  # whole lines in one write
    spoofed = end_of_output(5, "another-sweep")
    print(spoofed, file=stream)  # not this sweep's: printed, and no end of anything
    print(f"[trial 6] {end_of_output(6, TOKEN)}", file=stream)  # the app printed it: a line
    assert console.getvalue() == (
        f"[trial 3] hello\nbefore\nafter\n{spoofed}\n[trial 6] {end_of_output(6, TOKEN)}\n"
    )
    for number in (3, 4, 5, 6):
        _ran(outputs, number)
    outputs.arrived("stderr", 3)
    outputs.arrived("stderr", 4)
    assert outputs.missing() == [5, 6]  # only the ends that arrived on both streams count


def test_the_wait_ends_when_every_trial_that_ran_has_its_ends() -> None:
    outputs = TrialOutputs(TOKEN)
    _ran(outputs, 0)
    _ran(outputs, 1, error="RuntimeError: the app failed")  # failed: its error is output too
    _ran(outputs, 2, error=f"{p.STOPPED_EARLY}the failure streak")  # cut short: never waited
    _ran(outputs, 3, error=p.INTERRUPTED)
    outputs.trial_finished(TrialEnd("not-run-4", 4, "failed"))  # never started: not waited
    assert outputs.missing() == [0, 1]
    waiting = threading.Thread(target=lambda: results.append(outputs.wait(timeout_s=600)))
    results: list[list[int]] = []
    waiting.start()
    for number in (0, 1):
        for stream in ("stdout", "stderr"):
            outputs.arrived(stream, number)
    waiting.join()
    assert results == [[]]


def test_the_wait_gives_up_after_its_time_and_names_what_is_missing(caplog) -> None:
    outputs = TrialOutputs(TOKEN)
    _ran(outputs, 0)
    outputs.arrived("stdout", 0)  # its stderr never arrived (the worker died)
    assert outputs.wait(timeout_s=0.01) == [0]
    assert "trial(s) [0] did not reach this console" in caplog.text
