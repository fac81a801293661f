"""The Hydra application: compose the config, hand it to `ugro_hpo.pipeline.run`, report errors.

Only hydra and our light modules are imported here, so `--help`, `--cfg job` and
`dry_run=true` answer quickly. A user's mistake (a bad override, an unknown option, an invalid
search space) ends with one line on stderr and exit code 2, before any study, run or directory
of ours is left behind.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ugro_hpo.config.compose import conf_dir, register_resolvers
from ugro_hpo.errors import PROGRAM, UserError
from ugro_hpo.security.startup import load_secrets  # noqa: F401  (ugro's and tests' import)
from ugro_hpo.security.streams import ForwardingStream


def fail(message: str, code: int = 2) -> None:
    """Print one line naming the problem and exit."""
    from ugro_hpo.security.redaction import redact_text

    text = redact_text(" ".join(str(message).split()))
    text = "".join(c if c.isprintable() else "?" for c in text)  # no terminal escapes
    sys.stderr.write(f"{PROGRAM}: error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main() -> None:
    """Console entry point (`python -m ugro_hpo`, `ugro-hpo`); reads sys.argv like any Hydra app."""
    from ugro_hpo.process_policy import exit_without_teardown

    exit_without_teardown(_main)  # no teardown once every exit handler has run (1-2 s)


def _main() -> None:
    import hydra

    from ugro_hpo.config.compose import register_configs
    from ugro_hpo.process_policy import swapped_streams
    from ugro_hpo.security.startup import start
    from ugro_hpo.security.streams import RedactingStream

    try:
        start(sys.argv[1:])  # the same start-up as the Hydra sweeper's
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    register_configs()
    register_resolvers()
    entry = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)
    global _gate
    gate = _gate = _StderrGate(RedactingStream(sys.stderr))
    with swapped_streams(RedactingStream(sys.stdout), gate):  # flushed and put back at the end
        try:
            entry()
        except SystemExit as exc:
            if exc.code not in (0, None):
                _forget_failed_sweep()
            if not gate.released and exc.code not in (0, None):
                text = gate.held_text()
                gate.discard()
                fail(_one_line(text))
            raise
        except Exception as exc:  # Hydra re-raises what it cannot format (e.g. a resolver's error)
            _forget_failed_sweep()
            if gate.released:
                raise
            gate.discard()
            fail(_one_line(str(exc)))
        finally:
            gate.release()


def _task(cfg: Any) -> Any:
    """Hydra's task function: one call per job (one study)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ugro_hpo.names import job_study_name
    from ugro_hpo.pipeline import run
    from ugro_hpo.security.credentials import check_env_set
    from ugro_hpo.security.redaction import register_environment

    if _gate is not None:
        _gate.release()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    register_environment()  # what hydra.job.env_set (an override or a preset) added
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # One study per job, named after what the job varies (jobs must not share a study).
        cfg.study_name = job_study_name(
            cfg.study_name, list(hydra_cfg.overrides.task), _varying, hydra_cfg.job.num
        )
        _redact_file(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    try:
        check_env_set(dict(hydra_cfg.job.env_set or {}))
        # A single run's process exits next: Ray can go while the results are written (a
        # multirun's next job would have to start it again).
        single = hydra_cfg.mode != RunMode.MULTIRUN
        result = run(cfg, run_dir=str(run_dir), release_ray=single)
    except UserError as exc:
        _remove_empty_dirs(run_dir, stop_at=Path(str(cfg.outputs_dir)))
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the trials started (then the watch takes over)
        fail("interrupted: exiting now; rerun the same command to continue the study", 130)
    if result.status in ("dry_run", "nothing_to_run"):
        _remove_empty_dirs(run_dir, stop_at=Path(str(cfg.outputs_dir)))
    elif result.status == "interrupted":
        fail("interrupted: finished trials are saved; rerun the same command to continue", 130)
    elif result.status == "stopped":
        fail(
            f"study stopped: {result.summary.get('reason')}; fix the cause and rerun to continue", 3
        )
    return result


class SweepRecord(Callback):
    """Notes where a multirun writes (Hydra creates the sweep directory and its multirun.yaml
    before composing any job), so a sweep that fails before a job ran leaves nothing behind."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global _sweep_dir, _varying
        _sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        _varying = swept_keys(list(config.hydra.overrides.task))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """The jobs side by side: printed, and comparison.csv / .html in the sweep directory."""
        from ugro_hpo.results.comparison import write_comparison

        if _sweep_dir is not None and _sweep_dir.is_dir():
            table = write_comparison(_sweep_dir, _varying)
            if table:
                print(f"{table}\nComparison: {_sweep_dir / 'comparison.html'}", flush=True)


def swept_keys(overrides: list[str]) -> set[str]:
    """The keys a multirun sweeps over (``search=tpe,random``: ``search``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def _forget_failed_sweep() -> None:
    """Remove the sweep directory if it holds nothing but Hydra's multirun.yaml (and empty job
    directories): no job ran, so there is nothing to keep."""
    sweep = _sweep_dir
    if sweep is None or not sweep.is_dir():
        return
    entries = list(sweep.rglob("*"))
    if any(p.is_file() and p != sweep / "multirun.yaml" for p in entries):
        return
    (sweep / "multirun.yaml").unlink(missing_ok=True)
    for directory in sorted((p for p in entries if p.is_dir()), key=lambda p: -len(p.parts)):
        directory.rmdir()
    _remove_empty_dirs(sweep, stop_at=sweep.parent)


def _redact_file(path: Path) -> None:
    """Hydra records a sweep's overrides in multirun.yaml; keep secrets out of it."""
    from ugro_hpo.security.redaction import redact_text

    if path.is_file():
        text = path.read_text(encoding="utf-8")
        cleaned = redact_text(text)
        if cleaned != text:
            path.write_text(cleaned, encoding="utf-8")


def _remove_empty_dirs(path: Path, stop_at: Path) -> None:
    """Undo the run directory Hydra made for a job that never started (and empty parents).
    The path is walked as written, not resolved: a link on it ends the walk there."""
    stop = Path(os.path.abspath(stop_at)).parent
    current = Path(os.path.abspath(path))
    while current != stop and current != current.parent:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


_NOT_A_KEY = re.compile(r"Could not override '([^']+)'.*\n.*\nKey '[^']+' not in '\w+Settings'")
_NOISE = ("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=",
          "reference_type=", "Config search path", "provider=", "Traceback", "  File ")  # fmt: skip


def _one_line(text: str) -> str:
    """Condense Hydra's multi-line error report into one line."""
    from ugro_hpo.security.credentials import hint_for_schema_error

    hint = hint_for_schema_error(text)
    if hint:
        return hint
    typo = _NOT_A_KEY.search(text)
    if typo:  # Hydra suggests a `+`, which would add the typo as a key of its own
        from ugro_hpo.config.schema import unknown_key_message

        return unknown_key_message(typo[1])
    marker = "ConfigError raised while resolving interpolation: "
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(_NOISE):
            continue
        if marker in line:  # our own resolver's error, wrapped by OmegaConf
            return line.split(marker, 1)[1]
        if raw.startswith("\t") and parts:  # Hydra lists available options one per line
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
        else:
            parts.append(line.rstrip("."))
    return "; ".join(parts) or "invalid command line"


class _StderrGate(ForwardingStream):
    """Holds stderr back while Hydra composes, so a composition error can be shown as one line.

    Once the task starts (or the program ends) it passes everything through; logging handlers
    that captured it during start-up keep working.
    """

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.released = False
        self._held: list[str] = []

    @property
    def real(self) -> Any:
        return self.target

    def write(self, text: str) -> int:
        if self.released:
            return int(self.target.write(text))
        self._held.append(text)
        return len(text)

    def flush(self) -> None:
        if self.released:
            self.target.flush()

    def held_text(self) -> str:
        return "".join(self._held)

    def discard(self) -> None:
        self.released = True
        self._held.clear()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.target.write(self.held_text())
            self._held.clear()
            self.target.flush()


_gate: _StderrGate | None = None
_sweep_dir: Path | None = None
_varying: set[str] = set()  # the keys the current multirun sweeps over
