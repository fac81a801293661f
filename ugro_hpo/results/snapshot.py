"""The run directory's record of what ran: the resolved config, the overrides, a log file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import yaml

from ugro_hpo.results.writers import write_atomic
from ugro_hpo.security.paths import check_output_file
from ugro_hpo.security.redaction import redact_data, redact_text
from ugro_hpo.study_plan import Plan


class RedactingFormatter(logging.Formatter):
    """Log lines with secrets scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def write_config_snapshot(plan: Plan) -> None:
    """`.hydra/config.yaml` (resolved) and `.hydra/overrides.yaml`, as Hydra users expect."""
    hydra_dir = plan.run_dir / ".hydra"
    config = yaml.safe_dump(redact_data(plan.config), sort_keys=False)
    write_atomic(hydra_dir / "config.yaml", config)
    write_atomic(
        hydra_dir / "overrides.yaml", yaml.safe_dump([redact_text(o) for o in _overrides()])
    )


@contextlib.contextmanager
def log_file(plan: Plan) -> Iterator[None]:
    """Copy our log records into `<run_dir>/ugro_hpo.log` while the study runs. A link planted
    there is replaced, never appended through; a special file there is refused."""
    path = plan.run_dir / "ugro_hpo.log"
    if path.is_symlink():
        path.unlink()
    check_output_file(path, "log file")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    logger = logging.getLogger("ugro_hpo")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
