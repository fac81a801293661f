"""From the command line to a validated plan: the config tree and its schema, names, the
components it names by ``_target_``, and the `Plan` every later stage reads."""

from ugro_hpo.config.compose import compose, conf_dir, register_resolvers
from ugro_hpo.config.plan import Plan, build_plan, describe, resolve

__all__ = ["Plan", "build_plan", "compose", "conf_dir", "describe", "register_resolvers", "resolve"]
