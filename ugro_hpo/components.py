"""Build configured components (`_target_` specs) with errors a user can act on."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from ugro_hpo.errors import ConfigError, UserError


def instantiate(spec: Mapping[str, Any], key: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, turning failures into one-line ConfigErrors naming ``key``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError("needs a '_target_' naming the class or function to build", key=key)
    try:
        return hydra_instantiate(dict(spec), **_execution_whitelist(spec), **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        detail = f"{type(cause).__name__}: {cause}" if cause else str(exc).splitlines()[0]
        raise ConfigError(f"cannot build {spec['_target_']!r} ({detail})", key=key) from None
    except UserError:
        raise
    except Exception as exc:  # a target's constructor may raise anything
        raise ConfigError(
            f"cannot build {spec['_target_']!r} ({type(exc).__name__}: {exc})", key=key
        ) from None


def _execution_whitelist(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Hydra 1.4 asks the caller of instantiate which targets a config may run. Ours comes from
    the user's own command line and config files (stored, untrusted configs are rebuilt by an
    allow-list, never through here), so it is exactly the targets that config names."""
    import hydra.utils

    if not hasattr(hydra.utils, "execution_whitelist"):  # Hydra 1.3: no such check
        return {}
    return {"_execution_whitelist_": tuple(sorted(set(_targets(spec))))}


def _targets(data: Any) -> list[str]:
    if isinstance(data, Mapping):
        found = [str(data["_target_"])] if "_target_" in data else []
        return found + [t for value in data.values() for t in _targets(value)]
    if isinstance(data, (list, tuple)):
        return [t for value in data for t in _targets(value)]
    return []


def check_importable(spec: Mapping[str, Any], key: str) -> None:
    """Cheap check for components too heavy to import in a dry run: the package must exist."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("_target_"), str):
        raise ConfigError("needs a '_target_' naming the class or function to build", key=key)
    package = spec["_target_"].split(".", 1)[0]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"package {package!r} of {spec['_target_']!r} is not installed", key=key)
