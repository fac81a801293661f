"""Rebuild a study's objective from the config stored with it, without trusting that config.

A study database can be written by anyone who runs a driver on it, so the config it holds is
plain data from a stranger. It is never given to ``hydra.utils.instantiate``: the objective,
its model and its dataset are looked up by name in the tables below (the classes this package
ships), every argument is checked against the table's type and range, and only then is the
class called. A custom objective's function is never taken from storage: the person running
``train-best`` names it on the command line. Anything else is refused with one line.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_hpo.errors import ConfigError

_SIZE = 10**7  # a ceiling on counts and steps that no sane study comes near


@dataclass(frozen=True)
class Arg:
    """An argument a stored config may give: its type and, for numbers, its range."""

    kind: str  # int | float | bool | str | str_list | mapping | component
    low: float = -math.inf
    high: float = math.inf
    nullable: bool = False
    table: Mapping[str, Allowed] | None = None  # for a component: the classes it may name


@dataclass(frozen=True)
class Allowed:
    """A class the stored config may name, where to find it, and the arguments it may get."""

    module: str
    attribute: str
    args: Mapping[str, Arg]


def _cls(dotted: str, /, **args: Arg) -> tuple[str, Allowed]:
    module, _, attribute = dotted.rpartition(".")
    return dotted, Allowed(module, attribute, args)


_TEXT_SOURCE = {
    "seq_len": Arg("int", 8, 1 << 17),
    "eval_fraction": Arg("float", 0.0, 1.0),
    "max_train_chunks": Arg("int", 1, _SIZE, nullable=True),
    "max_eval_chunks": Arg("int", 1, _SIZE, nullable=True),
    "seed": Arg("int", 0, 2**32 - 1),
}
_MODEL = {
    "dtype": Arg("str"),
    "quantization": Arg("str", nullable=True),
    "gradient_checkpointing": Arg("bool"),
    "trust_remote_code": Arg("bool"),
    "revision": Arg("str", nullable=True),
    "target_modules": Arg("str_list", nullable=True),
    "chat_template": Arg("str", nullable=True),
}
_SFT_SOURCE = {
    "seq_len": Arg("int", 8, 1 << 17),
    "eval_fraction": Arg("float", 0.0, 1.0),
    "loss_on": Arg("str"),
    "packing": Arg("bool"),
    "max_train_examples": Arg("int", 1, _SIZE, nullable=True),
    "max_eval_examples": Arg("int", 1, _SIZE, nullable=True),
    "seed": Arg("int", 0, 2**32 - 1),
}
_ROWS = {"path": Arg("str"), "name": Arg("str", nullable=True), "train_split": Arg("str"),
         "eval_split": Arg("str", nullable=True), **_SFT_SOURCE}  # fmt: skip
MODELS = dict(
    [
        _cls("ugro_hpo.lora.models.PretrainedModel", name_or_path=Arg("str"), **_MODEL),
        _cls(
            "ugro_hpo.lora.models.TinyLlama",
            cache_dir=Arg("str"),
            vocab_size=Arg("int", 16, 1 << 17),
            hidden_size=Arg("int", 8, 8192),
            intermediate_size=Arg("int", 8, 32768),
            num_hidden_layers=Arg("int", 1, 128),
            num_attention_heads=Arg("int", 1, 128),
            num_key_value_heads=Arg("int", 1, 128),
            max_position_embeddings=Arg("int", 8, 1 << 17),
            pretrain_steps=Arg("int", 0, 100_000),
            pretrain_seq_len=Arg("int", 8, 1 << 17),
            pretrain_batch_size=Arg("int", 1, 4096),
            pretrain_lr=Arg("float", 0.0, 1.0),
            seed=Arg("int", 0, 2**32 - 1),
            target_modules=Arg("str_list", nullable=True),
            chat_template=Arg("str", nullable=True),
        ),
    ]
)
DATASETS = dict(
    [
        _cls("ugro_hpo.lora.data.PydocTopics", **_TEXT_SOURCE),
        _cls("ugro_hpo.lora.data.TextFiles", paths=Arg("str_list"), **_TEXT_SOURCE),
        _cls(
            "ugro_hpo.lora.data.HubDataset",
            path=Arg("str"),
            name=Arg("str", nullable=True),
            text_field=Arg("str"),
            train_split=Arg("str"),
            eval_split=Arg("str", nullable=True),
            **_TEXT_SOURCE,
        ),
        _cls("ugro_hpo.lora.sft_data.PydocQA", **_SFT_SOURCE),
        _cls(
            "ugro_hpo.lora.sft_data.InstructionSource",
            prompt_field=Arg("str"),
            completion_field=Arg("str"),
            template=Arg("str", nullable=True),
            **_ROWS,
        ),
        _cls(
            "ugro_hpo.lora.sft_data.ChatSource",
            messages=Arg("str"),
            chat_template=Arg("str", nullable=True),
            **_ROWS,
        ),
    ]
)
OBJECTIVES = dict(
    [
        _cls(
            "ugro_hpo.objectives.lora.LoraObjective",
            model=Arg("component", table=MODELS),
            dataset=Arg("component", table=DATASETS),
            fixed=Arg("mapping", nullable=True),
            save_adapter=Arg("bool"),
            keep_adapters=Arg("int", 0, 1000),
            generate_eval_n=Arg("int", 0, 100_000),
            generate_max_new_tokens=Arg("int", 1, 1 << 17),
            checkpoint_every=Arg("int", 0, 1 << 30),
        ),
        _cls(
            "ugro_hpo.objectives.synthetic.SyntheticObjective",
            function=Arg("str", nullable=True),
            sleep_s=Arg("float", 0.0, 60.0),
            fail_prob=Arg("float", 0.0, 1.0),
            nan_prob=Arg("float", 0.0, 1.0),
        ),
        _cls("ugro_hpo.objectives.custom.CustomObjective", fn=Arg("str")),
        _cls("ugro_hpo.sweeper.job.HydraJob"),  # a Hydra app's jobs: never rebuilt from storage
    ]
)
CUSTOM = "ugro_hpo.objectives.custom.CustomObjective"
HYDRA_JOB = "ugro_hpo.sweeper.job.HydraJob"


class StoredConfigRefused(ConfigError):
    """The stored config names something outside the allow-list or has a value out of range."""


def _refuse(where: str, problem: str) -> StoredConfigRefused:
    return StoredConfigRefused(
        f"stored config: {where} {problem}; the study database may have been altered, so "
        "nothing from it is run"
    )


def check_objective(config: Any) -> dict[str, Any]:
    """The stored ``objective`` section, checked against the allow-list (nothing imported).

    Returns it as plain, checked data: ``{"_target_": name, **arguments}`` with ``model`` and
    ``dataset`` checked the same way. Raises StoredConfigRefused otherwise.
    """
    if not isinstance(config, Mapping):
        raise _refuse("the study's config", "is not a mapping")
    spec = config.get("objective")
    if spec is None:
        raise ConfigError(
            "stored config: the study has no objective stored; rerun it once with this version"
        )
    return _check_component(spec, OBJECTIVES, "objective")


def _check_component(spec: Any, table: Mapping[str, Allowed], where: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise _refuse(where, "is not a mapping")
    target = spec.get("_target_")
    if not isinstance(target, str) or target not in table:
        shown = repr(target)[:80] if isinstance(target, str) else type(target).__name__
        raise _refuse(
            f"{where}._target_", f"names {shown}, which is not one of ugro_hpo's own classes"
        )
    allowed = table[target]
    out: dict[str, Any] = {"_target_": target}
    for key, value in spec.items():
        if key == "_target_":
            continue
        if not isinstance(key, str) or key not in allowed.args:
            raise _refuse(f"{where}", f"has the argument {str(key)[:60]!r}, which is not allowed")
        out[key] = _check_value(value, allowed.args[key], f"{where}.{key}")
    return out


def _check_value(value: Any, arg: Arg, where: str) -> Any:
    if value is None:
        if arg.nullable:
            return None
        raise _refuse(where, "is missing")
    if arg.kind == "bool":
        if not isinstance(value, bool):
            raise _refuse(where, "is not true or false")
        return value
    if arg.kind in ("int", "float"):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (arg.kind == "int" and not isinstance(value, int)):
            raise _refuse(where, f"is not a{'n integer' if arg.kind == 'int' else ' number'}")
        if not (math.isfinite(value) and arg.low <= value <= arg.high):
            raise _refuse(where, f"is outside [{arg.low:g}, {arg.high:g}]")
        return value
    if arg.kind == "str":
        if not isinstance(value, str) or len(value) > 4096:
            raise _refuse(where, "is not a short string")
        return value
    if arg.kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or len(value) > 1000:
            raise _refuse(where, "is not a list of strings")
        return [_check_value(v, Arg("str"), where) for v in value]
    if arg.kind == "component":
        assert arg.table is not None
        return _check_component(value, arg.table, where)
    return _plain_mapping(value, where)


def _plain_mapping(value: Any, where: str) -> Any:
    """A mapping of plain values (checked further by the class), never naming a component."""
    if not isinstance(value, Mapping):
        raise _refuse(where, "is not a mapping")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or key.startswith("_"):
            raise _refuse(where, f"has the key {str(key)[:60]!r}, which is not allowed")
        if isinstance(item, Mapping):
            out[key] = _plain_mapping(item, f"{where}.{key}")
        elif item is None or isinstance(item, (bool, int, float, str)):
            out[key] = item
        elif isinstance(item, list) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in item
        ):
            out[key] = list(item)
        else:
            raise _refuse(f"{where}.{key}", "is not a plain value")
    return out


def build_objective(
    checked: Mapping[str, Any],
    objective_fn: str | None = None,
    trust_remote_code: bool = False,
    outputs_dir: Path = Path("outputs"),
) -> Any:
    """The objective of a checked stored config, built by calling our own classes directly.

    ``objective_fn`` (from the command line) is required for a custom objective and replaces
    whatever function the stored config names. A stored model asking for remote code runs only
    with ``trust_remote_code`` (also from the command line). A model cache outside
    ``outputs_dir`` is moved under it, so a stored path cannot make us write elsewhere.
    """
    spec = dict(checked)
    target = spec.pop("_target_")
    if target == HYDRA_JOB:
        raise ConfigError(
            "train-best: the study's trials were jobs of a Hydra app; run the app with the best "
            "parameters (optimization_results.yaml in the sweep directory)"
        )
    if target == CUSTOM:
        if not objective_fn:
            raise ConfigError(
                "train-best: the study used a custom objective; name its function on the command "
                "line with --objective-fn package.module:function (it is never read from the study)"
            )
        spec["fn"] = objective_fn
    elif objective_fn:
        raise ConfigError(
            f"--objective-fn: the study's objective is {target.rpartition('.')[2]}, not a custom one"
        )
    if "model" in spec:
        model = dict(spec["model"])
        if model.get("trust_remote_code") and not trust_remote_code:
            raise ConfigError(
                "train-best: the study's model asks to run code from its repository "
                "(trust_remote_code); pass --trust-remote-code if you trust that model"
            )
        spec["model"] = _model(model, outputs_dir)
        spec["dataset"] = _call(DATASETS, dict(spec["dataset"]), "objective.dataset")
    return _call(OBJECTIVES, {"_target_": target, **spec}, "objective")


def _model(spec: dict[str, Any], outputs_dir: Path) -> Any:
    """The model; a model cache named by the study is used where it already holds the model or
    lies inside ``outputs_dir``, else the model is built under ``outputs_dir/models``."""
    model = _call(MODELS, dict(spec), "objective.model")
    cache = getattr(model, "path", None)
    if "cache_dir" not in spec or not isinstance(cache, Path):
        return model
    inside = cache.resolve().is_relative_to(outputs_dir.resolve())
    if inside or (cache / "config.json").is_file():
        return model
    return _call(MODELS, {**spec, "cache_dir": str(outputs_dir / "models")}, "objective.model")


def _call(table: Mapping[str, Allowed], spec: dict[str, Any], where: str) -> Any:
    allowed = table[spec.pop("_target_")]
    cls = getattr(importlib.import_module(allowed.module), allowed.attribute)
    try:
        return cls(**spec)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise _refuse(where, f"could not be built ({type(exc).__name__}: {exc})") from None
