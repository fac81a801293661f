"""``ray.runtime_env``: the Ray runtime environment a study's trials run in, checked here.

The value is handed to ``ray.init(runtime_env=...)``, so every trial of the study gets it:
``working_dir`` (a folder shipped to every node, the trials' working directory there),
``py_modules`` (folders or packages shipped and importable), ``pip`` (packages installed for the
trials), ``env_vars`` (environment variables of the trials), and Ray's other fields. Each field's
shape is checked here, so a mistake is one line naming the field rather than a Ray traceback.

``env_vars`` may carry a credential only with the value it has in the driver's environment
(`.env` included), written ``HF_TOKEN: ${oc.env:HF_TOKEN}``: a secret-named variable whose value
is anything else is refused, as ``hydra.job.env_set`` refuses one, because a config is copied
into run directories and tracking runs (an override that types the value is refused before
Hydra records it, `security.credentials.check_overrides`). The forwarded value is a registered secret, so it is scrubbed
from everything the study writes.

When no ``working_dir`` is given and the study joins a cluster, the objective's own code is
shipped (`ugro_hpo.execution.code_shipping`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.execution.code_shipping import SHIPPED_FROM_VARIABLE, ship_objective_code
from ugro_hpo.security.credentials import runtime_env_refusal
from ugro_hpo.security.redaction import is_secret_name, register

KEY = "ray.runtime_env"
# The fields of Ray 2.x's runtime_env (ray.runtime_env.RuntimeEnv.known_fields, less the
# private ones); a test compares them with the installed Ray.
RAY_FIELDS = frozenset({"working_dir", "py_modules", "py_executable", "excludes", "pip", "uv",
                        "conda", "env_vars", "container", "image_uri", "java_jars", "config",
                        "worker_process_setup_hook"})  # fmt: skip
_URI_SCHEMES = ("s3://", "gs://", "https://", "http://", "file://", "gcs://", "azure://",
                "abfss://", "conda://", "pip://")  # fmt: skip


def check_runtime_env(
    ray: Mapping[str, Any], objective: Any, outputs_dir: Path
) -> dict[str, Any] | None:
    """The runtime environment to start the study's Ray with (None: none at all).

    Args:
        ray: the ``ray`` section (resolved config data): ``runtime_env``, and ``address``, the
            cluster the study joins (unset: a Ray started here, which finds the code itself).
        objective: the checked objective (its ``code_module`` names the code to ship).
        outputs_dir: the study's outputs folder, never shipped.
    """
    env = _checked(ray.get("runtime_env"))
    if ray.get("address") and "working_dir" not in env:
        shipped = ship_objective_code(getattr(objective, "code_module", None), outputs_dir)
        if shipped:
            env["working_dir"] = shipped["working_dir"]
            env["excludes"] = [*env.get("excludes", []), *shipped["excludes"]]
    if "working_dir" in env and not env["working_dir"].startswith(_URI_SCHEMES):
        # The trials learn where their working directory came from (see code_shipping).
        env["env_vars"] = {**env.get("env_vars", {}), SHIPPED_FROM_VARIABLE: env["working_dir"]}
    return env or None


def describe_runtime_env(env: Mapping[str, Any] | None) -> list[str]:
    """The runtime environment for ``dry_run=true``'s plan: what is shipped, and the names (not
    the values) of the trials' variables."""
    if not env:
        return []
    parts = [f"working_dir {env['working_dir']}"] if "working_dir" in env else []
    parts += [f"{name} {env[name]}" for name in ("py_modules", "pip") if name in env]
    variables = sorted(set(env.get("env_vars") or ()) - {SHIPPED_FROM_VARIABLE})
    if variables:
        parts.append("env_vars " + ", ".join(variables))
    others = sorted(set(env) - {"working_dir", "excludes", "py_modules", "pip", "env_vars"})
    return [f"runtime env  {'; '.join(parts + others)}"]


def _checked(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            key=f"{KEY}",
            reason=f"must map Ray runtime_env fields (working_dir, py_modules, pip, env_vars, "
            f"...) to values, got {type(raw).__name__}; e.g. +{KEY}.env_vars.MY_FLAG=1",
        )
    env: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in RAY_FIELDS:
            raise ConfigError(
                key=f"{KEY}.{name}",
                reason=f"not a field of Ray's runtime_env; use one of "
                f"{', '.join(sorted(RAY_FIELDS))}",
            )
        if value is None:
            continue
        check = _CHECKS.get(str(name))
        env[str(name)] = check(f"{KEY}.{name}", value) if check else value
    return env


def _env_vars(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            key=f"{key}", reason=f"must map variable names to values, got {type(value).__name__}"
        )
    out = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ConfigError(key=f"{key}", reason=f"{name!r} is not an environment variable name")
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise ConfigError(
                key=f"{key}.{name}",
                reason=f"must be a string or a number, got {type(text).__name__}",
            )
        text = str(text)
        if is_secret_name(name):
            if os.environ.get(name) != text:
                raise ConfigError(runtime_env_refusal(f"{key}.{name}", name))
            register(text)
        out[name] = text
    return out


def _strings(key: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(key=f"{key}", reason=f"must be a list of strings, got {value!r}")
    if not all(isinstance(item, str) and item for item in value):
        raise ConfigError(
            key=f"{key}", reason=f"every entry must be a non-empty string, got {value!r}"
        )
    return list(value)


def _local_or_uri(key: str, value: str, must_be_dir: bool) -> str:
    """A URI as it is; a local path made absolute (Ray reads it from this process's cwd)."""
    if value.startswith(_URI_SCHEMES):
        return value
    path = Path(value).expanduser().resolve()
    if must_be_dir and not path.is_dir():
        raise ConfigError(
            key=f"{key}", reason=f"{value!r} is not a folder here (nor a URI such as s3://...zip)"
        )
    if not must_be_dir and not path.exists():
        raise ConfigError(
            key=f"{key}", reason=f"{value!r} does not exist here (give a folder, a .whl or a URI)"
        )
    return str(path)


def _working_dir(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key=f"{key}", reason=f"must be a folder or a URI, got {value!r}")
    return _local_or_uri(key, value, must_be_dir=True)


def _py_modules(key: str, value: Any) -> list[str]:
    return [_local_or_uri(key, item, must_be_dir=False) for item in _strings(key, value)]


def _pip(key: str, value: Any) -> Any:
    """A list of requirements, a requirements file, or Ray's dict form (``packages`` ...)."""
    if isinstance(value, str):
        if not Path(value).expanduser().is_file():
            raise ConfigError(
                key=f"{key}",
                reason=f"{value!r} is no requirements file here; give packages as a list, "
                f"e.g. '+{key}=[{value}]'",
            )
        return str(Path(value).expanduser().resolve())
    if isinstance(value, Mapping):
        if "packages" not in value:
            raise ConfigError(
                key=f"{key}", reason="the dict form needs a packages list (Ray's pip field)"
            )
        return {**value, "packages": _strings(f"{key}.packages", value["packages"])}
    return _strings(key, value)


_CHECKS = {
    "env_vars": _env_vars,
    "working_dir": _working_dir,
    "py_modules": _py_modules,
    "pip": _pip,
    "excludes": _strings,
}
