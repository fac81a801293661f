"""From the command line to a validated plan: the config tree and its schema, names, the
components it names by ``_target_``, and the `Plan` every later stage reads.

The names below are imported on first use: a trial's worker needs `components` only, not the
plan's samplers (Optuna), so importing one module of this package must not load the rest."""

from ugro_hpo.lazy import lazy_exports

_EXPORTS = {
    "compose": "compose",
    "conf_dir": "compose",
    "register_resolvers": "compose",
    "Plan": "plan",
    "build_plan": "plan",
    "describe": "plan",
    "resolve": "plan",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
