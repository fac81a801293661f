"""Ray for one study: started here (a local instance) or joined (``ray.address``), with the
environment and loggers our trials expect. Nothing of Ray is imported until a study runs."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from ugro_hpo.errors import UserError
from ugro_hpo.process_policy import RAY_DRIVER_ENV, set_defaults
from ugro_hpo.study_plan import Plan

HUB_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


_initialized_here = False  # whether this module started (or joined) the Ray in use


def ensure_ray(plan: Plan) -> None:
    """Start a local Ray, or join ``ray.address``; a Ray already running in-process is reused."""
    global _initialized_here
    import ray

    from ugro_hpo.execution.ray_compat import quiet_ray_loggers

    set_defaults(RAY_DRIVER_ENV)
    quiet_ray_loggers()
    if ray.is_initialized():
        if plan.ray_runtime_env and not _initialized_here:
            logging.getLogger("ugro_hpo").warning(
                "ray.runtime_env is not applied: this process already uses a Ray, whose "
                "runtime environment was fixed when it started"
            )
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
        "log_to_driver": plan.verbose > 0,
    }
    runtime_env = dict(plan.ray_runtime_env or {})
    if plan.ray_address:
        _check_reachable(plan.ray_address)
        # A local Ray's workers inherit this environment; a cluster's do not: the hub's
        # offline switches set here must reach the trials there too.
        offline = {k: os.environ[k] for k in HUB_OFFLINE if k in os.environ}
        if offline:
            runtime_env["env_vars"] = {**offline, **runtime_env.get("env_vars", {})}
    if runtime_env:  # ray.runtime_env, and the objective's code shipped (see code_shipping)
        options["runtime_env"] = runtime_env
    try:
        if plan.ray_address:
            ray.init(address=plan.ray_address, **options)
        else:
            # "local": start a new instance even if another cluster was started on this machine.
            ray.init(address="local", num_cpus=plan.ray_num_cpus, **options)
        _initialized_here = True
    except ValueError as exc:  # Ray's own check of the runtime environment (a job's clashing)
        if not runtime_env:
            raise
        raise UserError(f"ray.runtime_env: Ray refused it ({_first_line(exc)})") from None
    except (ConnectionError, RuntimeError) as exc:
        if not plan.ray_address:
            raise
        raise UserError(
            f"ray.address={plan.ray_address}: cannot join the cluster ({_first_line(exc)})"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port`` (Ray itself retries
    for minutes before it gives up)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"ray.address={address}: nothing answers there ({exc.strerror or exc}); start the head "
            "node with `ray start --head` or fix the address"
        ) from None
