"""Where the config tree lives and how to compose it outside a Hydra run (tests, notebooks,
the sweeper): the same config the command line would compose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugro_hpo.errors import PROGRAM


def conf_dir() -> Path:
    """The config tree: shipped inside the package, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"{PROGRAM}: config directory not found next to {package}")


EVALUATIONS_PER_TRIAL = 6
"""How many times a trial evaluates when the user sets ``max_steps`` but not ``eval_every``."""


def default_eval_every(max_steps: Any) -> Any:
    """``eval_every`` when it is not set: about six evaluations per trial, so ``max_steps=1``
    alone works and a long trial is not evaluated every few steps. A value that is not a
    number is passed on for the plan to refuse with the right key."""
    if isinstance(max_steps, int) and not isinstance(max_steps, bool):
        return max(1, max_steps // EVALUATIONS_PER_TRIAL)
    return max_steps


def register_resolvers() -> None:
    """`${ugro_path_name:...}` refuses names that would escape the outputs directory;
    `${ugro_eval_every:...}` makes ``eval_every`` follow ``max_steps`` unless it is set;
    `${ugro_settings_help:}` is the settings model's key list that ``--help`` prints."""
    from omegaconf import OmegaConf

    from ugro_hpo.names import check_path_name

    if not OmegaConf.has_resolver("ugro_path_name"):
        _register("ugro_path_name", lambda v: check_path_name(v, "study_name"))
    if not OmegaConf.has_resolver("ugro_eval_every"):
        _register("ugro_eval_every", default_eval_every)
    if not OmegaConf.has_resolver("ugro_settings_help"):
        from ugro_hpo.config.schema import settings_help

        # Hydra fills the help template with string.Template: a literal $ is written $$.
        _register("ugro_settings_help", lambda: settings_help().replace("$", "$$"))


def _register(name: str, resolver: Any) -> None:
    """OmegaConf 2.4 names `register_resolver` what 2.1-2.3 called `register_new_resolver`
    (2.3's `register_resolver` is the old, string-only form; 2.4 warns on the new name)."""
    import inspect

    from omegaconf import OmegaConf

    if "use_cache" in inspect.signature(OmegaConf.register_resolver).parameters:
        OmegaConf.register_resolver(name, resolver)
    else:
        OmegaConf.register_new_resolver(name, resolver)


def register_configs() -> None:
    """The structured configs conf/config.yaml and the group options build on: the settings
    model (`schema`) and our components' constructor defaults (`component_defaults`)."""
    from ugro_hpo.config import component_defaults, schema

    schema.register()
    component_defaults.register(conf_dir())


def compose(*overrides: str) -> Any:
    """The app's config composed with ``overrides``, as the command line would (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    register_resolvers()
    with initialize_config_dir(str(conf_dir()), job_name=PROGRAM, **version_base()):
        return hydra_compose("config", overrides=list(overrides))


def version_base() -> dict[str, str]:
    """Hydra 1.3's defaults, asked for where Hydra still takes a version base (1.4 deprecates
    the parameter, and its defaults are 1.3's)."""
    import hydra

    major, minor = (int(part) for part in hydra.__version__.split(".")[:2])
    return {} if (major, minor) >= (1, 4) else {"version_base": "1.3"}


def group_option(group: str, option: str) -> dict[str, Any]:
    """A config group's option as plain data, read from the config tree without composing
    the whole config (the sweeper's study, inside the app's own Hydra run). An option's
    defaults list may name other options of the same group (``tracking: dual`` is mlflow plus
    wandb); they come first and the option's own values win, as in Hydra."""
    from omegaconf import OmegaConf

    from ugro_hpo.errors import ConfigError

    path = conf_dir() / group / f"{option}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise ConfigError(
            f"{option!r} is not an option; use one of {', '.join(options)}", key=group
        )
    own = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(own, dict)
    merged: Any = OmegaConf.create({})
    for base in own.pop("defaults", []):
        merged = OmegaConf.merge(merged, group_option(group, str(base)))
    data = OmegaConf.to_container(OmegaConf.merge(merged, own))
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}


def apply_overrides(cfg: Any, overrides: list[str], where: str) -> None:
    """Command-line style ``key=value`` overrides (Hydra's grammar) applied to ``cfg``, a
    config built from the settings model; ``where`` names the setting they came from."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from ugro_hpo.config.schema import GROUPS, unknown_key_message
    from ugro_hpo.errors import ConfigError

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise ConfigError(str(exc).splitlines()[0], key=where) from None
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or override.is_sweep_override():
            raise ConfigError(f"{override.input_line!r}: give key=value, one value", key=where)
        value = override.value()
        if key in ("scheduler", "tracking") and isinstance(value, str):
            cfg[key] = group_option(key, value)
            continue
        if key.split(".", 1)[0] in GROUPS:
            raise ConfigError(
                f"{override.input_line!r}: {key} is not set this way here; the sweeper's own "
                "settings choose the scheduler and tracking, and the trials run the app",
                key=where,
            )
        try:
            if override.is_add() or override.is_force_add():
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, value, merge=True)
            else:
                OmegaConf.update(cfg, key, value, merge=True)
        except (ConfigKeyError, ConfigAttributeError):
            raise ConfigError(unknown_key_message(key)) from None
        except ValidationError as exc:
            raise ConfigError(str(exc).splitlines()[0], key=key) from None
