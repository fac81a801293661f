"""Where credentials may come from, and the refusals when they come from a config instead.

The trackers' and Ray's credentials are read from the environment, a git-ignored `.env`, a key
file or the tool's own login, never from a config file, a preset or an override: those are
copied into run directories, Hydra's multirun records and tracking runs. The same holds for
any secret-named variable a config would put into the environment through
``hydra.job.env_set`` (``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ...). Every refusal says where
the credential belongs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ugro_hpo.errors import ConfigError
from ugro_hpo.security.redaction import is_secret_name, register

KEY_SOURCES = {
    "wandb": "WANDB_API_KEY (environment or .env) or wandb.api_key_file",
    "mlflow": "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (environment or .env)",
    "ray": "RAY_AUTH_TOKEN (environment or .env)",
}
# Environment variables holding our trackers' and Ray's credentials.
CREDENTIAL_VARIABLES = {
    "WANDB_API_KEY": "the environment or .env, or wandb.api_key_file",
    "MLFLOW_TRACKING_PASSWORD": "the environment or .env",
    "MLFLOW_TRACKING_TOKEN": "the environment or .env",
    "RAY_AUTH_TOKEN": "the environment or .env",
}
ENV_SET = "hydra.job.env_set"
RUNTIME_ENV_VARS = "ray.runtime_env.env_vars"
_FROM_ENVIRONMENT = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)\}")
_SHELL_DIRECTORIES = {"PWD", "OLDPWD"}


def refusal(key: str, source: str) -> str:
    """The one line for a credential given by config (worded so that redaction, which scrubs
    what follows ``key:``, leaves it readable)."""
    return (
        f"{key} is refused, as credentials are never read from a config, a preset or an "
        f"override; use {source}"
    )


_SCHEMA_KEY = re.compile(r"Key '([^']+)' not in '(Wandb|Mlflow|Ray)Settings'")
_SECTIONS = {"Wandb": "wandb", "Mlflow": "mlflow", "Ray": "ray"}


def hint_for_schema_error(message: str) -> str | None:
    """Our line for Hydra's "Key 'api_key' not in 'WandbSettings'" (a credential in a preset)."""
    match = _SCHEMA_KEY.search(message)
    if match and is_secret_name(match[1]):
        section = _SECTIONS[match[2]]
        return refusal(f"{section}.{match[1]}", KEY_SOURCES[section])
    return None


def refuse_config_credentials(data: Mapping[str, Any]) -> None:
    """A composed config may not carry our trackers' or Ray's credentials."""
    for section, source in KEY_SOURCES.items():
        for key in data.get(section) or {}:
            if is_secret_name(key) and not str(key).endswith("_file"):
                raise ConfigError(refusal(f"{section}.{key}", source))


def check_overrides(arguments: Iterable[str]) -> None:
    """Refuse a credential given as an override (``wandb.api_key=...``,
    ``hydra.job.env_set.WANDB_API_KEY=...``), before Hydra sees it, whatever its prefix
    (``+``, ``++``) or spelling of the key."""
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:
            continue
        key = argument.split("=", 1)[0].lstrip("+~").strip()
        parts = key.split(".")
        if key.startswith(ENV_SET + "."):
            check_env_set({key[len(ENV_SET) + 1 :]: None})
        elif RUNTIME_ENV_VARS + "." in key:
            _check_runtime_env_var(key.rpartition(".")[2], argument.split("=", 1)[1], key)
        elif parts[0] in KEY_SOURCES and len(parts) > 1:
            refuse_config_credentials({parts[0]: {parts[-1]: True}})


def check_env_set(env_set: Mapping[str, Any]) -> None:
    """``hydra.job.env_set`` may not set a credential: neither our trackers' and Ray's nor any
    other secret-named variable (``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ...), since the
    value would be copied wherever the config is. The shell's PWD and OLDPWD are directories,
    not secrets."""
    for name, value in env_set.items():
        upper = str(name).upper()
        where = CREDENTIAL_VARIABLES.get(upper)
        if where is None and is_secret_name(name) and upper not in _SHELL_DIRECTORIES:
            where = "the environment or .env"
        if where:
            register(value)  # scrubbed from whatever Hydra already wrote
            raise ConfigError(refusal(f"{ENV_SET}.{name}", f"{name} in {where}"))


def runtime_env_refusal(key: str, name: str) -> str:
    """The one line for a secret-named variable in ``ray.runtime_env.env_vars`` whose value is
    not the driver's own."""
    return refusal(
        key,
        f"{name} in the environment or .env, forwarded to the trials by the value "
        f"${{oc.env:{name}}} (no file gets it)",
    )


def _check_runtime_env_var(name: str, value: str, key: str) -> None:
    """On the command line, a secret-named trial variable may only be forwarded from this
    environment (``${oc.env:NAME}``): a value typed there lands in Hydra's records."""
    if is_secret_name(name) and not _FROM_ENVIRONMENT.fullmatch(value.strip().strip("'\"")):
        register(value)
        raise ConfigError(runtime_env_refusal(key, name))
