"""The sweeper's side of the trust boundary (README, Security), on top of the start-up every
entry point shares (`ugro_hpo.security.startup`).

In the driver, before anything is written: credentials are refused wherever the sweep could
carry them (``hydra.sweeper.overrides``, the ``hydra.*`` overrides of the command line,
``hydra.job.env_set``); the passwords of the sweeper's URLs and the values of the app's
secret-named settings are registered; a search-space file, which may come from someone else,
names app parameters only and carries no interpolation. Hydra's ``multirun.yaml`` is written
redacted.

In the worker: a job's ``.hydra/`` files are scrubbed before its task function starts, and
every record the job's logging writes passes through the scrubber (`scrubbing_context`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ugro_hpo.errors import SearchSpaceError

INSTANTIATE_KEY = re.compile(r"_[A-Za-z0-9]+_")  # _target_, _partial_, _args_, _recursive_, ...


def begin_sweep(settings: Mapping[str, Any], config: Any) -> None:
    """The start-up of every entry point (`.env`, the environment), then: refuse a credential
    in ``hydra.sweeper.overrides`` (our config), in the command line's ``hydra.*`` overrides
    and in ``hydra.job.env_set`` (which puts it in every job's environment and files), and
    register every URL password and secret-named value the sweep was given."""
    from omegaconf import OmegaConf

    from ugro_hpo.security.credentials import check_env_set
    from ugro_hpo.security.redaction import redact_data
    from ugro_hpo.security.startup import register_url_passwords, start

    raw = settings.get("overrides")
    ours = [str(o) for o in raw] if isinstance(raw, list) else []
    hydra_overrides = _strings(OmegaConf.to_container(config.hydra.overrides.hydra))
    task_overrides = _strings(OmegaConf.to_container(config.hydra.overrides.task))
    start([*ours, *hydra_overrides])
    register_url_passwords([*task_overrides, *_strings(settings)])
    env_set = OmegaConf.to_container(config.hydra.job.env_set, resolve=False) or {}
    check_env_set(dict(env_set))  # type: ignore[arg-type]
    # The app's own secret-named settings (db.password: ...), and ours given as overrides,
    # become known secrets: scrubbed from every file and line of the sweep.
    composed = OmegaConf.to_container(config, resolve=False)
    redact_data({k: v for k, v in composed.items() if k != "hydra"})  # type: ignore[union-attr]
    redact_data(settings)
    redact_data(_assignments([*ours, *hydra_overrides, *task_overrides]))


def _strings(data: Any) -> list[str]:
    return list(_walk_strings(data))


def _walk_strings(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from _walk_strings(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _walk_strings(value)


def _assignments(overrides: Iterable[str]) -> dict[str, str]:
    """``key=value`` overrides as {last key segment: value}, for redact_data to judge names."""
    pairs = {}
    for line in overrides:
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.lstrip("+~").rsplit(".", 1)[-1]] = value
    return pairs


def check_space_file(data: Any, path: Path) -> None:
    """A search-space file names parameters of the app's config only: no ``_target_``,
    ``_partial_``, ``_args_`` or other instantiate key (its choices would pick what the app
    builds), nothing under ``hydra`` (where jobs run and write), and no ``${...}`` in a value
    (an interpolation would resolve inside the app's config: an environment variable, a
    resolver's call)."""
    parameters = data.get("parameters") if isinstance(data, Mapping) else None
    for name, spec in (parameters or {}).items() if isinstance(parameters, Mapping) else ():
        parts = re.split(r"[./]", str(name))
        if parts[0] == "hydra" or any(INSTANTIATE_KEY.fullmatch(part) for part in parts):
            raise SearchSpaceError(
                f"search space {path}: parameter {str(name)!r} is refused: a search-space file "
                "may name the app's own parameters only, never one under hydra. or an "
                "instantiate key (_target_, _partial_, _args_, ...)"
            )
        for value in _strings(spec):
            if "${" in value:
                raise SearchSpaceError(
                    f"search space {path}: parameter {str(name)!r}: value {value[:60]!r} is "
                    "refused: values in a search-space file cannot hold ${...} interpolations"
                )


def config_for_workers(config: Any) -> Any:
    """The sweep's config as it travels to the trials' workers: the sweeper's own settings (a
    storage URL's password among them) redacted, in ``hydra.sweeper`` and in the command
    line's ``hydra.sweeper`` overrides. A job needs none of them; it is composed from the
    app's files, those overrides and its trial's."""
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    from ugro_hpo.security.redaction import redact_data, redact_text

    if config is None:
        return None
    redacted = copy.deepcopy(config)
    sweeper = redact_data(OmegaConf.to_container(config.hydra.sweeper, resolve=False))
    overrides = [
        redact_text(o) if o.lstrip("+~").startswith(("hydra.sweeper", "hydra/sweeper")) else o
        for o in _strings(OmegaConf.to_container(config.hydra.overrides.hydra))
    ]
    with read_write(redacted.hydra), open_dict(redacted.hydra):
        redacted.hydra.sweeper = sweeper
        redacted.hydra.overrides.hydra = overrides
    return redacted


def write_redacted_config(config: Any, path: Path) -> None:
    """Hydra's ``multirun.yaml`` (the sweep's config as composed, interpolations kept), with
    every secret-named value and known secret replaced."""
    import yaml
    from omegaconf import OmegaConf

    from ugro_hpo.security.redaction import redact_data, redact_text

    data = redact_data(OmegaConf.to_container(config, resolve=False, enum_to_str=True))
    text = redact_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    path.write_text(text, encoding="utf-8")


def job_files_may_hold_secrets(config: Any, parameters: Any, fixed: Iterable[str]) -> bool:
    """Could a job's ``.hydra/`` files hold a secret? They are made of the sweep's config (as
    composed, interpolations kept), its ``hydra.job.env_set`` (resolved), the fixed overrides
    and the parameters' values: when redaction would change none of these, there is nothing
    to scrub there, and the workers skip it (the scan costs tens of milliseconds a file)."""
    from omegaconf import OmegaConf

    from ugro_hpo.security.redaction import redact_text

    try:
        env_set = OmegaConf.to_container(config.hydra.job.env_set, resolve=True)
        text = "\n".join([OmegaConf.to_yaml(config), repr(env_set), *fixed, repr(parameters)])
    except Exception:  # an interpolation that cannot be resolved here: scrub to be safe
        return True
    return redact_text(text) != text


# -- in the worker ---------------------------------------------------------------------------


def scrubbing_context(hydra_context: Any, scrub: Callable[[str], str] | None,
                      files: bool = True) -> Any:  # fmt: skip
    """Hydra's context for one job, its callbacks wrapped so that its log records (and, when
    ``files``, the ``.hydra/`` files Hydra writes just before ``on_job_start``) are scrubbed."""
    if scrub is None:
        return hydra_context
    callbacks = _ScrubbingCallbacks(hydra_context.callbacks, scrub, files)
    return dataclasses.replace(hydra_context, callbacks=callbacks)


class _ScrubbingCallbacks:
    """The app's Hydra callbacks, with the scrubbing done first at each job's start."""

    def __init__(self, callbacks: Any, scrub: Callable[[str], str], files: bool) -> None:
        self.callbacks = callbacks
        self.scrub = scrub
        self.files = files

    def __getattr__(self, name: str) -> Any:
        return getattr(self.callbacks, name)

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        output_dir = config.hydra.runtime.output_dir
        if self.files and config.hydra.output_subdir is not None:
            for file in sorted((Path(output_dir) / str(config.hydra.output_subdir)).glob("*.yaml")):
                scrub_file(file, self.scrub)
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
                handler.addFilter(ScrubbingFilter(self.scrub))
        self.callbacks.on_job_start(config=config, **kwargs)


class ScrubbingFilter(logging.Filter):
    """Scrubs a record's message and traceback before any handler formats it."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit: its text as it stands
            message = f"{record.msg} {record.args}"
        record.msg = scrub_text(message, self.scrub)
        record.args = None
        if record.exc_info:
            record.exc_text = scrub_text(
                logging.Formatter().formatException(record.exc_info), self.scrub
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text, self.scrub)
        return True


def scrub_file(path: Path, scrub: Callable[[str], str]) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    cleaned = scrub_text(text, scrub)
    if cleaned != text:
        path.write_text(cleaned, encoding="utf-8")


SCRUB_CHUNK = 10_000
"""Characters scrubbed at once: the worker's scrubber looks at a bounded text, so a long one
is scrubbed a line at a time, and a long line in overlapping pieces."""


def scrub_text(text: str, scrub: Callable[[str], str]) -> str:
    """``scrub`` over a text of any length: line by line, and a line longer than
    `SCRUB_CHUNK` twice, in pieces offset by half a piece (a secret shorter than half a piece
    lies wholly inside a piece of one of the passes)."""
    if len(text) <= SCRUB_CHUNK:
        return scrub(text)
    lines = text.split("\n")
    out = []
    for line in lines:
        if len(line) <= SCRUB_CHUNK:
            out.append(scrub(line))
            continue
        for offset in (0, SCRUB_CHUNK // 2):
            pieces = [line[:offset]] if offset else []
            pieces += [
                scrub(line[i : i + SCRUB_CHUNK]) for i in range(offset, len(line), SCRUB_CHUNK)
            ]
            line = "".join(pieces)
        out.append(line)
    return "\n".join(out)
