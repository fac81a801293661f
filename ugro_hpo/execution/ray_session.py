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


def ensure_ray(plan: Plan) -> None:
    """Start a local Ray, or join ``ray.address``; a Ray already running in-process is reused."""
    import ray

    from ugro_hpo.execution.ray_compat import quiet_ray_loggers

    set_defaults(RAY_DRIVER_ENV)
    quiet_ray_loggers()
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
        "log_to_driver": plan.verbose > 0,
    }
    if plan.ray_address:
        _check_reachable(plan.ray_address)
        # A local Ray's workers inherit this environment; a cluster's do not: the hub's
        # offline switches set here must reach the trials there too.
        offline = {k: os.environ[k] for k in HUB_OFFLINE if k in os.environ}
        if offline:
            options["runtime_env"] = {"env_vars": offline}
        try:
            ray.init(address=plan.ray_address, **options)
        except (ConnectionError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"ray.address={plan.ray_address}: cannot join the cluster ({first})"
            ) from None
    else:
        # "local": start a new instance even if another cluster was started on this machine.
        ray.init(address="local", num_cpus=plan.ray_num_cpus, **options)


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
