"""Our components' constructors as the settings model of their config groups.

A config group option (``model: tiny_llama``) names a class of ours and the values it chooses;
the keys it leaves at their defaults come from the constructor, where they are written once.
Each option's defaults list takes them from here (``/ugro_defaults_<group>_<option>@_here_``,
stored at the top of Hydra's config store rather than in a group of their own, so ``--help``
does not list them as groups and Hydra's help walks no more groups than before),
so every argument shows in ``--cfg job`` and is overridden as ``model.seed=3`` without a ``+``.
Only the light groups (model, dataset, objective, tracking) are read this way: their modules
import no heavy library, so ``--help`` stays quick. An argument whose default is not plain data
(an object, a callable) is left out: it cannot be written in a config anyway.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

DEFAULTS_GROUP = "ugro_defaults"
GROUPS = ("model", "dataset", "objective")
_PLAIN = (type(None), bool, int, float, str)


def constructor_defaults(target: str) -> dict[str, Any]:
    """The arguments of ``target`` that have a plain default, following ``**kwargs`` up to
    the base classes of ours that take them."""
    module, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module), name)
    found: dict[str, Any] = {}
    for cls in inspect.getmro(obj) if inspect.isclass(obj) else (obj,):
        if not cls.__module__.startswith("ugro_hpo."):
            break
        function = cls.__init__ if inspect.isclass(cls) else cls
        if inspect.isclass(cls) and "__init__" not in vars(cls):
            continue
        more = False
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                more = True
            elif parameter.default is not parameter.empty and _plain(parameter.default):
                found.setdefault(parameter.name, _data(parameter.default))
        if not more:
            break
    return found


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)


def _data(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def register(conf_dir: Path) -> None:
    """Store each option's constructor defaults in Hydra's config store."""
    import yaml
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="ugro_lora_fixed", node=lora_fixed_settings())
    for group in GROUPS:
        for path in sorted((conf_dir / group).glob("*.yaml")):
            target = (yaml.safe_load(path.read_text()) or {}).get("_target_", "")
            if str(target).startswith("ugro_hpo."):
                store.store(
                    name=f"{DEFAULTS_GROUP}_{group}_{path.stem}",
                    node=constructor_defaults(str(target)),
                )


def lora_fixed_settings() -> type:
    """``objective.fixed`` of the lora objective: the LoRA knobs with the defaults of
    `Hyperparameters`, where they are defined (types OmegaConf cannot check are left to it)."""
    import dataclasses

    from ugro_hpo.lora.training import Hyperparameters

    checked = {"int", "float", "bool", "str", "float | None", "int | None", "str | None"}
    return dataclasses.make_dataclass(
        "LoraFixedSettings",
        [(f.name, f.type if f.type in checked else Any, dataclasses.field(default=f.default))
         for f in dataclasses.fields(Hyperparameters)],
    )  # fmt: skip
