"""The command lines: `python -m ugro_hpo` (the Hydra app, `app`), `ugro hpo ...` (UGRO's
command line, `ugro`), and the commands on a stored study (`stored_commands`)."""

from ugro_hpo.cli.ugro import main

__all__ = ["main"]
