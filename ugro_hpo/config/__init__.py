"""From the command line to a validated plan: the config tree and its schema, and the checks
that turn a composed config into the `Plan` every later stage reads (`config.plan.build_plan`,
not re-exported here: it loads the samplers, and so Optuna, which `--help` does without)."""

from ugro_hpo.config.compose import compose, conf_dir, register_resolvers
from ugro_hpo.study_plan import LiveParts, Plan

__all__ = ["LiveParts", "Plan", "compose", "conf_dir", "register_resolvers"]
