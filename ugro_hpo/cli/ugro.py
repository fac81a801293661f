"""UGRO's command line, kept working: `ugro hpo sweep --study-name s --search-space f.yaml ...`.

It only translates UGRO's flags into Hydra overrides of the same app (`python -m ugro_hpo`);
extra `key=value` arguments after the flags are passed through as overrides too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ugro_hpo.config import conf_dir
from ugro_hpo.config.schema import default

# The app's default storage, as a stored-study command run from the same directory finds it.
DEFAULT_STORAGE = str(default("storage")).replace("${outputs_dir}", str(default("outputs_dir")))


def quote(value: str) -> str:
    """A Hydra override value that stays one string whatever it contains."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _options(group: str) -> set[str]:
    return {p.stem for p in (conf_dir() / group).glob("*.yaml")}


def _model_overrides(value: str) -> list[str]:
    """A config option name (llama2_7b), else any hub id or local path through model=hf."""
    if value in _options("model"):
        return [f"model={value}"]
    return ["model=hf", f"model.name_or_path={quote(value)}"]


def _dataset_overrides(value: str) -> list[str]:
    """A config option name (wikitext), a local text file, else a hub id or saved dataset."""
    if value in _options("dataset"):
        return [f"dataset={value}"]
    path = Path(value).expanduser()
    if path.is_file():
        return ["dataset=text_files", f"dataset.paths=[{quote(str(path.resolve()))}]"]
    return ["dataset=hf", f"dataset.path={quote(value)}"]


def _search_space_overrides(value: str) -> list[str]:
    """A search-space file (UGRO's usage), or the name of a search_space option."""
    if value in _options("search_space") and not Path(value).is_file():
        return [f"search_space={value}"]
    return [f"search_space_file={quote(str(Path(value).expanduser().resolve()))}"]


def sweep_overrides(args: argparse.Namespace) -> list[str]:
    """UGRO's flags as Hydra overrides."""
    from ugro_hpo.errors import ConfigError

    for flag in ("study_name", "search_space", "model", "dataset", "tracking_uri", "wandb_project",
                 "ray_address", "storage", "export_best"):  # fmt: skip
        if getattr(args, flag) is not None and not str(getattr(args, flag)).strip():
            raise ConfigError(
                f"--{flag.replace('_', '-')}: empty; give a value or leave the flag out"
            )
    overrides: list[str] = []
    simple = {
        "study_name": args.study_name,
        "n_trials": args.n_trials,
        "parallel_jobs": args.parallel_jobs,
        "max_steps": args.max_steps,
        "mlflow.tracking_uri": args.tracking_uri,
        "wandb.project": args.wandb_project,
        "ray.address": args.ray_address,
        "storage": args.storage,
    }
    for key, value in simple.items():
        if value is not None:
            overrides.append(f"{key}={quote(value) if isinstance(value, str) else value}")
    if args.export_best:
        overrides.append(f"export_best={quote(str(Path(args.export_best).expanduser().resolve()))}")
    if args.search_space:
        overrides += _search_space_overrides(args.search_space)
    if args.model:
        overrides += _model_overrides(args.model)
    if args.dataset:
        overrides += _dataset_overrides(args.dataset)
    tracking = args.tracking or ("dual" if args.wandb_project else None)
    if tracking:
        overrides.append(f"tracking={tracking}")
    if args.dry_run:
        overrides.append("dry_run=true")
    return overrides + list(args.overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ugro",
        description="UGRO command line (hyperparameter optimisation).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    hpo = commands.add_parser(
        "hpo", help="hyperparameter optimisation", allow_abbrev=False
    ).add_subparsers(dest="action", required=True)
    sweep = hpo.add_parser("sweep", help="run (or continue) an HPO study", allow_abbrev=False)
    sweep.add_argument("--study-name")
    sweep.add_argument("--search-space", help="search-space YAML file (UGRO schema) or option name")
    sweep.add_argument("--n-trials", type=int)
    sweep.add_argument("--parallel-jobs", type=int)
    sweep.add_argument("--max-steps", type=int)
    sweep.add_argument(
        "--model", help="model option (tiny_llama, llama2_7b, ...) or hub id / local path"
    )
    sweep.add_argument(
        "--dataset", help="dataset option (wikitext, ...), hub id, saved dataset or text file"
    )
    sweep.add_argument("--tracking-uri", help="MLflow tracking URI")
    sweep.add_argument("--wandb-project", help="W&B project (adds W&B tracking beside MLflow)")
    sweep.add_argument("--tracking", choices=sorted(_options("tracking")), help="tracking mode")
    sweep.add_argument("--ray-address", help="join an existing Ray cluster (host:port or auto)")
    sweep.add_argument("--storage", help="Optuna storage URL")
    sweep.add_argument("--export-best", help="also write the best parameters to this YAML file")
    sweep.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    sweep.add_argument("overrides", nargs="*", help="further Hydra overrides, key=value")
    add_stored_commands(hpo)
    return parser


def add_stored_commands(commands: Any) -> None:
    """analyze, export-best and train-best: commands on a study already in storage."""

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, allow_abbrev=False)
        sub.add_argument("--study-name", required=True)
        sub.add_argument("--storage", default=DEFAULT_STORAGE,
                         help=f"Optuna storage URL (default {DEFAULT_STORAGE})")  # fmt: skip
        return sub

    analyze = command("analyze", "rebuild summary, trials table, best parameters and report/")
    analyze.add_argument("--output-dir", help="default outputs/<study>/analysis_<time>")
    export = command("export-best", "write the best parameters to a YAML file")
    export.add_argument("--output", required=True)
    train = command("train-best", "train once more with the best parameters and save the adapter")
    train.add_argument("--max-steps", type=int, help="default: the study's max_steps")
    train.add_argument("--output-dir", help="default outputs/<study>/best_trial_<n>_<steps>_steps")
    train.add_argument(
        "--objective-fn",
        help="a custom objective's function, package.module:function (never read from the study)",
    )
    train.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a model that runs code from its repository, if the study's config asks for it",
    )


def run_stored_command(args: argparse.Namespace) -> None:
    """Run analyze / export-best / train-best; bad input is one line and exit code 2."""
    import ugro_hpo.cli.stored_commands as stored
    from ugro_hpo.cli.app import fail, load_secrets
    from ugro_hpo.errors import UserError
    from ugro_hpo.process_policy import redacted_streams

    load_secrets()
    # What a stored study holds was written by whoever drives it: scrub what we print of it.
    with redacted_streams():
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s",
                            datefmt="%H:%M:%S")  # fmt: skip
        output_dir = getattr(args, "output_dir", None)
        try:
            if args.action == "analyze":
                out = Path(output_dir) if output_dir else None
                stored.analyze(args.study_name, args.storage, out)
            elif args.action == "export-best":
                stored.export_best(args.study_name, args.storage, Path(args.output))
            else:
                out = Path(output_dir) if output_dir else None
                stored.train_best(args.study_name, args.storage, out, args.max_steps,
                                  args.objective_fn, args.trust_remote_code)  # fmt: skip
        except UserError as exc:
            fail(str(exc), exc.exit_code)


def main(argv: Sequence[str] | None = None) -> None:
    """`ugro` console script."""
    args = _parser().parse_args(argv)
    if args.action != "sweep":
        run_stored_command(args)
        return
    import ugro_hpo.cli.app as app
    from ugro_hpo.errors import UserError

    try:
        overrides = sweep_overrides(args)
    except UserError as exc:
        app.fail(str(exc), exc.exit_code)

    sys.argv = ["ugro", *overrides]
    app.main()


if __name__ == "__main__":
    main()
