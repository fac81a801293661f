"""gpu-check's driver: set up the venv, run each check within its own timeout and the run's
budget, print one line per check, write every figure to gpu-check.json. Usage and the
reasons behind the set-up are in the header of scripts/gpu-check.

Standard library only: it runs on the system's Python, before the venv exists.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from checks import (
    CHECKS,
    MODELS,
    PROBES,
    ROOT,
    SPACE,
    STUDIES,
    VENV_PYTHON,
    CheckFailed,
    Context,
)

BUDGET_S = 570  # the checks' time in all (set-up not counted)
SETUP_TIMEOUT_S = 1800
MIN_CHECK_S = 15  # a check with less time left than this is not started
SAFE_PATH = re.compile(r"[\w./+:@-]+")  # paths travel in Hydra overrides, unquoted
MODULES = ("ugro_hpo", "ray", "optuna", "hydra", "torch", "transformers", "peft", "accelerate",
           "pytest", "bitsandbytes")  # fmt: skip
BENCH = ROOT / "scripts" / "bench" / "lora_throughput.py"
BENCH_FUNCTIONS = ("bare_loop", "fresh_model", "load_objective")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu-check", description="Check ugro_hpo on a CUDA GPU (see the header of scripts/gpu-check).",
        allow_abbrev=False,
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="say what a run does, check what can be checked here"
    )
    parser.add_argument("--out", help="output folder (default outputs/gpu-check/<timestamp>)")
    parser.add_argument(
        "--wheels", help="install from this folder of wheels only (no package index)"
    )
    parser.add_argument("--only", help="comma-separated checks to run (default: all)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="time for all checks (s)")
    args = parser.parse_args(argv)
    names = [c.name for c in CHECKS]
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(names))
        if unknown:
            parser.error(f"--only: unknown check(s) {unknown}; known: {', '.join(names)}")
    if args.wheels and not Path(args.wheels).is_dir():
        parser.error(f"--wheels {args.wheels}: not a directory")
    args.wheels = str(Path(args.wheels).resolve()) if args.wheels else None
    args.stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    default = ROOT / "outputs" / "gpu-check" / args.stamp
    args.out = Path(args.out).resolve() if args.out else default
    if not SAFE_PATH.fullmatch(str(args.out)):
        parser.error(f"--out {args.out}: use a path of letters, digits and ./_-+:@ only "
                     "(it goes into Hydra overrides unquoted)")  # fmt: skip
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "space.yaml").write_text(SPACE)
    selected = [c for c in CHECKS if not args.only or c.name in args.only.split(",")]
    ctx = Context(out=out, stamp=args.stamp, deadline=0.0)
    record: dict[str, Any] = {"dry_run": args.dry_run, "started": args.stamp, "out": str(out),
                              "budget_s": args.budget_s, "checks": []}  # fmt: skip
    try:
        ok = (dry_run if args.dry_run else real_run)(args, ctx, selected, record)
    except KeyboardInterrupt:  # the running check's processes are stopped by then
        record["interrupted"], ok = True, False
    record["passed"] = ok
    (out / "gpu-check.json").write_text(json.dumps(record, indent=2, default=str))
    print(
        f"gpu-check: {'all passed' if ok else 'FAILED'}; figures in {out / 'gpu-check.json'}",
        flush=True,
    )
    return 0 if ok else 1


def line(status: str, name: str, text: str) -> None:
    print(f"{status} {name}: {text}", flush=True)


# -- a run on the GPU machine -------------------------------------------------------------------


def real_run(
    args: argparse.Namespace, ctx: Context, selected: list, record: dict[str, Any]
) -> bool:
    print(
        f"gpu-check: setting up .venv (log: {ctx.out / 'logs' / 'setup.log'})",
        file=sys.stderr,
        flush=True,
    )
    try:
        record["setup"] = setup(args.wheels, ctx.out / "logs" / "setup.log")
        line("PASS", "setup", record["setup"])
    except CheckFailed as exc:
        line("FAIL", "setup", str(exc))
        for check in selected:
            line("FAIL", check.name, "not run: the set-up failed")
        return False
    ctx.deadline = time.time() + args.budget_s
    ok = True
    for check in selected:
        started = time.time()
        ctx.ends_by = min(started + check.timeout_s, ctx.deadline)
        entry: dict[str, Any] = {"name": check.name, "timeout_s": check.timeout_s}
        if ctx.left() < MIN_CHECK_S:
            entry.update(status="FAIL", text=f"not run: the {args.budget_s:.0f} s budget is spent")
        else:
            print(
                f"gpu-check: {check.name} (up to {ctx.left():.0f} s)", file=sys.stderr, flush=True
            )
            try:
                text, details = check.run(ctx)
                entry.update(status="PASS", text=text, details=details)
            except CheckFailed as exc:
                entry.update(status="FAIL", text=str(exc))
            except Exception as exc:  # a bug or a missing tool fails this check, not the run
                entry.update(status="FAIL", text=f"{type(exc).__name__}: {exc}")
        entry["seconds"] = round(time.time() - started, 1)
        ok &= entry["status"] == "PASS"
        record["checks"].append(entry)
        line(entry["status"], check.name, entry["text"])
    record["studies"] = ctx.studies
    return ok


def setup(wheels: str | None, log: Path) -> str:
    """The venv the checks run in: .venv, made on the system's CUDA torch when it has one,
    then scripts/setup (offline from ``wheels`` if given), then the quant extra."""
    env = {**os.environ, "PYTHON": sys.executable}
    pip_from = ["--no-index", "--find-links", wheels] if wheels else []
    if wheels:  # scripts/setup's pip reads these too
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=wheels)
    said = []
    if not VENV_PYTHON.exists() and _runs(
        [sys.executable, "-c", "import torch; assert torch.cuda.is_available()"], log, env
    ):
        _must(
            [sys.executable, "-m", "venv", "--system-site-packages", str(ROOT / ".venv")],
            log,
            env,
            "making .venv",
        )
        said.append("made .venv on the system's CUDA torch (--system-site-packages)")
    _must([str(ROOT / "scripts" / "setup")], log, env, "scripts/setup")
    if not _runs([str(VENV_PYTHON), "-c", "import bitsandbytes"], log, env):
        _must([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_from,
               "-e", ".[dev,quant]"], log, env, "installing the quant extra (bitsandbytes)")  # fmt: skip
        said.append("installed the quant extra")
    said.append("offline from " + wheels if wheels else "from the package index")
    return ".venv ready (" + "; ".join(said) + ")"


def _runs(command: list[str], log: Path, env: dict[str, str]) -> bool:
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                  timeout=SETUP_TIMEOUT_S)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            handle.write(f"{exc}\n")
            return False
    return done.returncode == 0


def _must(command: list[str], log: Path, env: dict[str, str], what: str) -> None:
    if not _runs(command, log, env):
        tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-1:]
        hint = "" if "PIP_NO_INDEX" in env else " (no network? give --wheels DIR)"
        raise CheckFailed(f"{what} failed{hint}: {tail[0][:200] if tail else ''} (log: {log})")


# -- the dry run --------------------------------------------------------------------------------


def dry_run(args: argparse.Namespace, ctx: Context, selected: list, record: dict[str, Any]) -> bool:
    """Say what a run does, and check here what needs no GPU: packages, overrides, test
    collection, the benchmark functions the throughput probe imports, nvidia-smi."""
    have_venv = VENV_PYTHON.exists()
    pool = ThreadPoolExecutor(max_workers=3)
    futures: dict[str, Any] = {
        "setup": pool.submit(_check_setup, args.wheels),
        "bench functions": pool.submit(_check_bench),
    }
    if have_venv:  # the slowest first; the model's path (for the 4-bit study) meanwhile
        futures["collect gpu tests"] = pool.submit(_check_collect)
        found = _capture([str(VENV_PYTHON), str(PROBES), "model", "--cache", str(MODELS)], 120)
        if found.returncode == 0:
            paths = json.loads(found.stdout.splitlines()[-1])
            ctx.model_path = paths["path"]
            state = {p: "built" if Path(p, "config.json").is_file() else "a run builds it"
                     for p in (paths["path"], paths["larger"])}  # fmt: skip
            futures["models"] = (
                "PASS",
                "; ".join(f"{path} ({how})" for path, how in state.items()),
            )
        else:
            futures["models"] = ("FAIL", f"probes.py model: {_last(found.stderr)}")
    ctx.model_path = ctx.model_path or str(MODELS / "tiny-llama-<digest>")
    gpu_here = _capture(["nvidia-smi", "-L"], 30).returncode == 0
    futures["nvidia-smi"] = pool.submit(_check_nvidia_smi, gpu_here)
    keys = sorted(
        {s for c in selected for s in c.settings if s in STUDIES}, key=list(STUDIES).index
    )
    if have_venv:
        futures.update(
            {f"compose {k}": pool.submit(_check_compose, k, ctx, gpu_here) for k in keys}
        )
    print("gpu-check --dry-run: what a run on a CUDA machine does (nothing is run)")
    print(f"set-up: {_setup_plan(args.wheels)}")
    print(f"checks, in order, within {args.budget_s:.0f} s in all (each with its own timeout):")
    for check in selected:
        print(f"  {check.name} (up to {check.timeout_s:.0f} s): {check.summary}")
        for item in check.settings:
            command = STUDIES[item].command(ctx) if item in STUDIES else [item]
            print("      " + " ".join(command).replace(f"{ROOT}/", ""))
    print("what can be checked here:", flush=True)
    pool.shutdown(wait=True)
    ok = True
    for name, future in futures.items():
        try:
            status, text = future if isinstance(future, tuple) else future.result()
        except Exception as exc:
            status, text = "FAIL", f"{type(exc).__name__}: {exc}"
        ok &= status != "FAIL"
        record["checks"].append({"name": name, "status": status, "text": text})
        line(status, name, text)
    if not have_venv:
        line(
            "SKIP",
            "compose, collect",
            "no .venv here yet: a run creates it before it composes anything",
        )
    return ok


def _capture(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 127, "", str(exc))


def _last(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1][:400] if lines else "(no output)"


def _setup_plan(wheels: str | None) -> str:
    source = (
        f"offline from {wheels} (pip --no-index --find-links)"
        if wheels
        else "from the package index"
    )
    make = ("use the existing .venv" if VENV_PYTHON.exists() else
            "make .venv (--system-site-packages when python3's torch sees CUDA, so torch is not reinstalled)")  # fmt: skip
    return f"{make}; run scripts/setup; pip install -e '.[dev,quant]' when bitsandbytes is missing; {source}"


def _check_setup(wheels: str | None) -> tuple[str, str]:
    """What .venv lacks (a run installs it); with --wheels, that pip finds everything there."""
    if VENV_PYTHON.exists():
        code = ("import importlib.util as u, json, sys; "
                "print(json.dumps([m for m in sys.argv[1:] if u.find_spec(m) is None]))")  # fmt: skip
        done = _capture([str(VENV_PYTHON), "-c", code, *MODULES], 60)
        missing = json.loads(done.stdout) if done.returncode == 0 else ["(could not ask .venv)"]
        said = f"all but {', '.join(missing)}: a run installs them" if missing else "every package"
        parts = [f".venv has {said}"]
    else:
        parts = ["no .venv: a run makes it"]
    if wheels:
        names = sorted(p.name.lower() for p in Path(wheels).glob("*.whl"))
        lacking = [
            n for n in ("hatchling", "bitsandbytes") if not any(x.startswith(n) for x in names)
        ]
        if lacking:
            return (
                "FAIL",
                f"{wheels} lacks wheels for {', '.join(lacking)} ({len(names)} wheels there)",
            )
        if VENV_PYTHON.exists():
            done = _capture([str(VENV_PYTHON), "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
                             "--find-links", wheels, "-e", ".[dev,quant]"], 300)  # fmt: skip
            if done.returncode != 0:
                return (
                    "FAIL",
                    f"pip cannot install '.[dev,quant]' from {wheels}: {_pip_error(done.stderr)}",
                )
            parts.append(f"'.[dev,quant]' resolves from {wheels} alone ({len(names)} wheels)")
    return "PASS", "; ".join(parts)


def _pip_error(text: str) -> str:
    """pip's own reason (its last ERROR line), not the notes it prints after it."""
    errors = [x.strip() for x in text.splitlines() if x.strip().startswith("ERROR")]
    return errors[-1][:400] if errors else _last(text)


def _check_nvidia_smi(gpu_here: bool) -> tuple[str, str]:
    if gpu_here:
        return "PASS", "present: " + _last(_capture(["nvidia-smi", "-L"], 30).stdout)
    where = "present but sees no GPU" if shutil.which("nvidia-smi") else "not on this machine"
    return "SKIP", f"{where} (a run needs it: the checks watch the GPU through it)"


def _check_bench() -> tuple[str, str]:
    """The throughput probe imports these from the benchmark; a rename must show here."""
    tree = ast.parse(BENCH.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = [name for name in BENCH_FUNCTIONS if name not in defined]
    if missing:
        return "FAIL", f"{BENCH.relative_to(ROOT)} no longer defines {missing}"
    return "PASS", f"{BENCH.relative_to(ROOT)} defines {', '.join(BENCH_FUNCTIONS)}"


def _check_collect() -> tuple[str, str]:
    done = _capture(
        [
            str(VENV_PYTHON),
            "-m",
            "pytest",
            "-m",
            "gpu",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        180,
    )
    tests = [x.split("::")[-1] for x in done.stdout.splitlines() if "::" in x]
    if done.returncode != 0 or not tests:
        return (
            "FAIL",
            f"pytest -m gpu --collect-only: exit {done.returncode}: {_last(done.stdout + done.stderr)}",
        )
    return "PASS", f"{len(tests)} gpu tests collected ({', '.join(tests)})"


def _check_compose(key: str, ctx: Context, gpu_here: bool) -> tuple[str, str]:
    """The study's command with dry_run=true: composes, validates, prints the plan."""
    command = [*STUDIES[key].command(ctx), "dry_run=true"]
    done = _capture(command, 120)
    if done.returncode == 0:
        return "PASS", _plan(done.stdout)
    refused = _last(done.stderr or done.stdout)
    if gpu_here:
        return "FAIL", refused
    # Without a GPU here the placement check may refuse resources.gpu > 0 even in a dry run;
    # ray.autoscaler=true skips that check alone, so everything else is still validated.
    again = _capture([*command, "ray.autoscaler=true"], 120)
    if again.returncode != 0:
        return "FAIL", refused
    return "PASS", f"{_plan(again.stdout)}; without a GPU here the plain dry run says: {refused}"


def _plan(text: str) -> str:
    """The plan's study and resources lines, e.g. '8 trials, 4 at a time, ...; 0.25 gpu'."""
    found = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^(study|resources)\s+(.*)$", text, re.M)
    }
    study = re.sub(r"^\S+\s+\((.*)\)$", r"\1", found.get("study", "?"))
    return f"composes and validates: {study}; {found.get('resources', '?')}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
