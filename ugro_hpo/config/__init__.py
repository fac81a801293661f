"""From the command line to a validated plan: the config tree and its schema, names, the
components it names by ``_target_``, and the `Plan` every later stage reads.

The plan's names are imported on first use: a trial's worker needs `components` only, not the
plan's samplers (Optuna), so importing one module of this package must not load the plan.
(`compose` is imported at once: the function must hide the module of the same name.)"""

from ugro_hpo.config.compose import compose, conf_dir, register_resolvers
from ugro_hpo.lazy import lazy_exports

_PLAN_EXPORTS = {"Plan": "plan", "build_plan": "plan", "describe": "plan", "resolve": "plan"}
__getattr__ = lazy_exports(__name__, _PLAN_EXPORTS)
__all__ = ["Plan", "build_plan", "compose", "conf_dir", "describe", "register_resolvers", "resolve"]
