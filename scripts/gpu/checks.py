"""The checks gpu-check runs on a CUDA machine: each a function of a `Context` that returns
one line of figures and the details for the JSON, or raises `CheckFailed` with the reason.

Standard library only (the driver runs before the venv exists); everything that needs torch,
Ray or Optuna runs in a subprocess of the venv's Python with a timeout, so a hung or crashed
check costs its own time and no other's.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import observe

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PROBES = ROOT / "scripts" / "gpu" / "probes.py"
MODELS = ROOT / "outputs" / "models"  # the default study's cache: built once per machine
GRACE_S = 10.0  # a study given Ctrl-C gets this long to stop Ray before it is killed
MEMORY_TOLERANCE_MIB = 64.0
THROUGHPUT_TARGET = 0.95  # as scripts/bench/lora_throughput.py: the trial within 5% of bare peft
ALL_LINEAR = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
SFT_FIXTURES = ROOT / "tests" / "fixtures" / "sft"  # a JSONL of conversations, a chat template
# The one skip that is not a failure on a GPU machine: a test of a group on two GPUs, where
# the machine has one (its reason starts with this).
FEWER_GPUS = "needs 2 CUDA devices"

SPACE = """\
# gpu-check's search space: only the learning rate and dropout vary, so every trial trains the
# same shapes and studies with 1, 2 or 4 trials per GPU compare in trials per hour.
parameters:
  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-3, log: true, default: 5.0e-4}
  lora_dropout: {type: float, min: 0.0, max: 0.2, default: 0.05}
objectives:
  - {name: eval_loss, direction: minimize}
"""


@dataclass(frozen=True)
class Study:
    """One study a check runs: a short key (its folder and name suffix) and its overrides."""

    key: str
    overrides: tuple[str, ...]
    n_trials: int
    tiny: bool = True  # the default model (tiny_llama); False: the tiny model through model=hf

    def command(self, ctx: Context) -> list[str]:
        common = [
            "tracking=none", "report=false", "search=random", "scheduler=fifo",
            f"outputs_dir={ctx.out / 'studies'}", f"study_name=gpu-check-{ctx.stamp}-{self.key}",
            f"hydra.run.dir={ctx.out / 'runs' / self.key}",
            f"search_space_file={ctx.out / 'space.yaml'}", f"n_trials={self.n_trials}",
        ]  # fmt: skip
        model = (
            [f"model.cache_dir={MODELS}"] if self.tiny else [f"model.name_or_path={ctx.model_path}"]
        )
        return [str(VENV_PYTHON), "-m", "ugro_hpo", *common, *self.overrides, *model]


def _rate(gpu: str, jobs: int) -> tuple[str, ...]:
    return (f"resources.gpu={gpu}", f"parallel_jobs={jobs}", "max_steps=200", "eval_every=50")


STUDIES = {
    "gpu4": Study("gpu4", _rate("0.25", 4), 8),
    "memory": Study("memory", ("resources.gpu=1", "parallel_jobs=1", "max_steps=60", "eval_every=30"), 20),
    "four_bit": Study("four_bit", ("model=hf", "model.quantization=4bit", "model.gradient_checkpointing=true",
                                   f"model.target_modules={ALL_LINEAR}", "resources.gpu=0.5", "parallel_jobs=2",
                                   "max_steps=20", "eval_every=10"), 2, tiny=False),
    # Chat SFT on the tiny Llama through model=hf (its saved tokenizer has no chat template, so
    # the study gives one), loaded in 4 bits, with greedy generation scored at the end.
    "sft_chat": Study("sft_chat", ("model=hf", "model.quantization=4bit", "model.gradient_checkpointing=true",
                                   f"model.target_modules={ALL_LINEAR}", "dataset=chat",
                                   f"dataset.path={SFT_FIXTURES / 'chats.jsonl'}",
                                   f"dataset.chat_template={SFT_FIXTURES / 'chat_template.jinja'}",
                                   "dataset.eval_fraction=0.2", "objective.generate_eval_n=4",
                                   "objective.generate_max_new_tokens=16", "resources.gpu=0.5",
                                   "parallel_jobs=2", "max_steps=20", "eval_every=10"), 2, tiny=False),
    "gpu1": Study("gpu1", _rate("1", 1), 8),
    "gpu2": Study("gpu2", _rate("0.5", 2), 8),
}  # fmt: skip


@dataclass
class Context:
    """What the checks share: the output folder, the run's stamp, the time left, results."""

    out: Path
    stamp: str
    deadline: float
    model_path: str = ""
    ends_by: float = 0.0  # when the running check must be done
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def left(self) -> float:
        return self.ends_by - time.time()

    def env(self) -> dict[str, str]:
        # One GPU for every study (the checks are about sharing one), unless the user chose.
        return {"CUDA_VISIBLE_DEVICES": "0", **os.environ, "PYTHONUNBUFFERED": "1"}


class CheckFailed(Exception):
    """A check's one-line reason for failing."""


def run_logged(
    command: list[str], log: Path, ctx: Context, reserve_s: float = 0.0
) -> tuple[int | None, float]:
    """Run ``command`` in its own process group with its output in ``log``; when the check's
    time (less ``reserve_s`` for what follows) is up, stop the group. None: timed out."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                   env=ctx.env(), start_new_session=True)  # fmt: skip
        try:
            timeout = max(1.0, ctx.left() - GRACE_S - reserve_s)
            return process.wait(timeout=timeout), time.time() - started
        except subprocess.TimeoutExpired:
            stop_group(process)
            return None, time.time() - started
        except KeyboardInterrupt:  # its own session does not get the terminal's Ctrl-C
            stop_group(process)
            raise


def stop_group(process: subprocess.Popen) -> None:
    """Ctrl-C the process group we started (a study then stops its Ray), wait a little, then
    kill whatever of the group is left."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=GRACE_S)


def last_line(log: Path) -> str:
    """The line that says what went wrong: the last error-looking one, else the last one."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|Error|FAIL|Traceback", line)]
    return (errors or lines or ["(no output)"])[-1][:300]


def probe(name: str, args: list[str], ctx: Context) -> dict[str, Any]:
    """Run a probe (scripts/gpu/probes.py) in the venv and return what it printed."""
    log = ctx.out / "logs" / f"probe-{name}.log"
    rc, seconds = run_logged([str(VENV_PYTHON), str(PROBES), name, *args], log, ctx)
    if rc is None:
        raise CheckFailed(f"probe {name} timed out after {seconds:.0f} s (log: {log})")
    if rc != 0:
        raise CheckFailed(f"probe {name}: {last_line(log)} (log: {log})")
    for text in reversed(log.read_text().splitlines()):  # warnings may follow on stderr
        if text.startswith("{"):
            return json.loads(text)
    raise CheckFailed(f"probe {name} printed no result (log: {log})")


def run_study(
    key: str, ctx: Context, interval_s: float | None = None
) -> tuple[dict[str, Any], observe.GpuSampler | None]:
    """Run one study (sampling nvidia-smi meanwhile if asked) and gather what it left:
    exit code, summary.json, each trial's start and end; and the GPU samples."""
    study = STUDIES[key]
    log = ctx.out / "logs" / f"study-{key}.log"
    sampler = observe.GpuSampler(interval_s) if interval_s else None
    with sampler or nullcontext():
        rc, seconds = run_logged(study.command(ctx), log, ctx, reserve_s=15)
    summary_file = ctx.out / "runs" / key / "summary.json"
    result: dict[str, Any] = {
        "command": " ".join(study.command(ctx)),
        "exit_code": rc,
        "seconds": round(seconds, 1),
        "summary": json.loads(summary_file.read_text()) if summary_file.is_file() else None,
        "log": str(log),
    }
    ctx.studies[key] = result
    if rc is None:
        raise CheckFailed(f"study {key} timed out after {seconds:.0f} s (log: {log})")
    if rc != 0:
        raise CheckFailed(f"study {key} exited {rc}: {last_line(log)}")
    counts = (result["summary"] or {}).get("counts", {})
    if counts.get("complete") != study.n_trials:
        raise CheckFailed(f"study {key}: {counts.get('complete')} of {study.n_trials} trials "
                          f"complete ({counts}); log: {log}")  # fmt: skip
    storage = f"sqlite:///{ctx.out / 'studies' / 'studies.db'}"
    trials = probe("trials", ["--storage", storage, "--study", f"gpu-check-{ctx.stamp}-{key}"], ctx)
    result["trials"] = [t for t in trials["trials"] if t["start"] and t["end"]]
    return result, sampler


def span_rate(result: dict[str, Any]) -> float:
    """Trials per hour from the first trial's start to the last one's end (Ray's start-up and
    the study's files left out, as they are paid once per study)."""
    trials = result["trials"]
    span = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    return observe.per_hour(len(trials), span)


# -- the checks ---------------------------------------------------------------------------------


def environment(ctx: Context) -> tuple[str, dict[str, Any]]:
    """nvidia-smi answers, and the venv's torch sees CUDA."""
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,uuid,driver_version,memory.total",
                           "--format=csv,noheader"], capture_output=True, text=True, timeout=30)  # fmt: skip
    if gpus.returncode != 0:
        raise CheckFailed(f"nvidia-smi: {(gpus.stderr or gpus.stdout).strip()[:200]}")
    code = ("import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,"
            " 'available': torch.cuda.is_available(), 'devices': torch.cuda.device_count()}))")  # fmt: skip
    torch = subprocess.run([str(VENV_PYTHON), "-c", code], capture_output=True, text=True,
                           timeout=max(5, ctx.left()), env=ctx.env())  # fmt: skip
    if torch.returncode != 0:
        raise CheckFailed(f"the venv's torch: {(torch.stderr or '').strip().splitlines()[-1:]}")
    info = json.loads(torch.stdout)
    details = {"nvidia_smi": gpus.stdout.strip().splitlines(), **info}
    if not info["available"]:
        raise CheckFailed(f"torch {info['torch']} (CUDA {info['cuda']}) in .venv sees no CUDA "
                          "device: remove .venv and rerun, so it is made on the system's CUDA torch")  # fmt: skip
    return (
        f"{gpus.stdout.strip().splitlines()[0]}; torch {info['torch']} (CUDA {info['cuda']})",
        details,
    )


def tiny_model(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The default study's tiny Llama, built once into outputs/models (later runs find it)."""
    found = probe("model", ["--cache", str(MODELS), "--build"], ctx)
    ctx.model_path = found["path"]
    return f"{found['path']} (ready in {found['seconds']:.0f} s)", found


def gpu_tests(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The gpu-marked tests; on a GPU machine a skip is a failure (something is missing)."""
    report = ctx.out / "gpu-tests.xml"
    log = ctx.out / "logs" / "pytest-gpu.log"
    command = [str(VENV_PYTHON), "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}"]  # fmt: skip
    rc, seconds = run_logged(command, log, ctx)
    if rc is None:
        raise CheckFailed(f"timed out after {seconds:.0f} s (log: {log})")
    if not report.is_file():
        raise CheckFailed(f"pytest exited {rc} without a report: {last_line(log)}")
    cases = observe.junit_cases(report)
    fewer = observe.skipped_for(cases, FEWER_GPUS)
    details = {"exit_code": rc, "seconds": round(seconds, 1), "tests": cases, "log": str(log),
               "not_applicable": sorted(fewer)}  # fmt: skip
    bad = {name: c for name, c in cases.items() if c["outcome"] != "passed" and name not in fewer}
    if rc != 0 or bad or not cases:
        first = next(iter(bad.items()), ("", {"outcome": f"exit {rc}", "message": last_line(log)}))
        raise CheckFailed(f"{len(bad)} of {len(cases)} not passed; {first[0]} {first[1]['outcome']}: "
                          f"{first[1]['message']}")  # fmt: skip
    ran = [name for name in cases if name not in fewer]
    left = f"; {len(fewer)} need 2 GPUs ({', '.join(sorted(fewer))})" if fewer else ""
    return f"{len(ran)} passed in {seconds:.0f} s ({', '.join(ran)}){left}", details


def four_trials_share_gpu(ctx: Context) -> tuple[str, dict[str, Any]]:
    """8 trials, 4 at a time at 0.25 GPU each: 4 trial processes on one GPU in one sample."""
    result, sampler = run_study("gpu4", ctx, interval_s=0.25)
    assert sampler is not None
    most, gpu = observe.most_on_one_gpu(sampler.samples, sampler.before)
    at_once = observe.most_overlapping([(t["start"], t["end"]) for t in result["trials"]])
    details = {"processes_on_one_gpu": most, "gpu_uuid": gpu, "trials_at_once": at_once,
               "samples": len(sampler.samples), "nvidia_smi_errors": sampler.errors[:3],
               "pids": sorted(observe.study_pids(sampler.samples, sampler.before))}  # fmt: skip
    figure = (f"{most} trial processes on {gpu} in one nvidia-smi sample, {at_once} trials running "
              f"at once (study storage), 8/8 complete in {result['seconds']:.0f} s")  # fmt: skip
    if most < 4 or at_once < 4:
        raise CheckFailed(figure + _no_processes_hint(sampler))
    return figure, details


def _no_processes_hint(sampler: observe.GpuSampler) -> str:
    if observe.study_pids(sampler.samples, sampler.before):
        return ""
    return (
        "; nvidia-smi listed no process of the study (in a container without the host's "
        "process namespace it lists none)"
    )


def memory_returns(ctx: Context) -> tuple[str, dict[str, Any]]:
    """20 trials in one reused worker: its GPU memory between trials does not grow."""
    result, sampler = run_study("memory", ctx, interval_s=0.1)
    assert sampler is not None
    pids = observe.study_pids(sampler.samples, sampler.before)
    if len(pids) != 1:
        raise CheckFailed(f"the 20 trials ran in {len(pids)} GPU processes {sorted(pids)}, not one "
                          f"reused worker{_no_processes_hint(sampler)}")  # fmt: skip
    pid = pids.pop()
    trials = sorted(result["trials"], key=lambda t: t["start"])
    series = observe.memory_of(sampler.samples, pid)
    if not series:
        raise CheckFailed(f"nvidia-smi gives no memory figure for worker {pid} ([N/A]; some "
                          "containers hide it)")  # fmt: skip
    lows = observe.troughs(series, [t["start"] for t in trials], trials[-1]["end"] + 0.5)
    try:
        grew = observe.growth(lows)
    except ValueError as exc:
        raise CheckFailed(f"{exc} (nvidia-smi sampled every 0.1 s)") from None
    details = {"worker_pid": pid, "troughs_mib": lows, **grew, "tolerance_mib": MEMORY_TOLERANCE_MIB,
               "samples": len(series)}  # fmt: skip
    first_trial = "no sample" if lows[0] is None else f"{lows[0]:.0f} MiB"
    figure = (f"worker {pid} holds {grew['first_mib']:.0f} MiB between trials early on (2-4) and "
              f"{grew['last_mib']:.0f} MiB late (18-20): growth {grew['growth_mib']:+.0f} MiB, "
              f"most {grew['max_growth_mib']:+.0f} MiB (tolerance {MEMORY_TOLERANCE_MIB:.0f}; "
              f"trial 1, which starts CUDA: {first_trial})")  # fmt: skip
    if max(grew["growth_mib"], grew["max_growth_mib"]) > MEMORY_TOLERANCE_MIB:
        raise CheckFailed(figure)
    return figure, details


def four_bit(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The tiny Llama in 4 bits (bitsandbytes) trains a few steps, and a 2-trial 4-bit study."""
    if not ctx.model_path:
        ctx.model_path = probe("model", ["--cache", str(MODELS)], ctx)["path"]
    loaded = probe("four-bit", ["--model", ctx.model_path], ctx)
    if not loaded["linear4bit_layers"] or not math.isfinite(loaded["eval_loss"]):
        raise CheckFailed(f"not a 4-bit model that trains: {loaded}")
    result, _ = run_study("four_bit", ctx)
    figure = (f"{loaded['linear4bit_layers']} Linear4bit layers (bitsandbytes {loaded['bitsandbytes']}), "
              f"5 steps to eval loss {loaded['eval_loss']:.2f}; 4-bit study 2/2 trials complete in "
              f"{result['seconds']:.0f} s")  # fmt: skip
    return figure, {"probe": loaded, "study_seconds": result["seconds"]}


def sft_chat_four_bit(ctx: Context) -> tuple[str, dict[str, Any]]:
    """A chat SFT study in 4 bits: a chat template given, loss on assistant tokens, exact match."""
    if not ctx.model_path:
        ctx.model_path = probe("model", ["--cache", str(MODELS)], ctx)["path"]
    result, _ = run_study("sft_chat", ctx)
    with (ctx.out / "runs" / "sft_chat" / "trials.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["state"] == "complete"]
    missing = [k for k in ("eval_loss", "eval_token_accuracy", "eval_exact_match", "eval_token_f1")
               if not rows or k not in rows[0]]  # fmt: skip
    if missing:
        raise CheckFailed(f"study sft_chat: trials.csv lacks {missing}")
    figure = (f"2/2 chat trials complete in 4 bits in {result['seconds']:.0f} s; eval loss "
              + ", ".join(f"{float(r['eval_loss']):.2f}" for r in rows) + "; exact match "
              + ", ".join(r["eval_exact_match"] for r in rows))  # fmt: skip
    return figure, {"trials": rows, "study_seconds": result["seconds"]}


def throughput_vs_bare_peft(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The trial's training loop against a bare peft loop on the GPU, tokens per second."""
    # Judged on a ~100M Llama, where the GPU sets the pace as it does for real models; on the
    # tiny one the GPU waits on Python, so its ratio is shown but not judged.
    larger = probe("throughput", ["--size", "larger", "--steps", "60", "--repeats", "3"], ctx)
    tiny = probe("throughput", ["--size", "tiny"], ctx)

    def said(m: dict[str, Any]) -> str:
        medians = m["median_tokens_per_s"]
        return (f"{m['parameters'] / 1e6:.0f}M: trial {medians['ugro_trial_loop']:.0f} vs bare "
                f"{medians['bare_peft_loop']:.0f} tokens/s = {m['ratio']:.3f}")  # fmt: skip

    figure = (f"{said(larger)} (target >= {THROUGHPUT_TARGET}); tiny {said(tiny)} (not judged); "
              f"{larger['autocast_dtype']} autocast, batch {larger['batch_size']}")  # fmt: skip
    if larger["ratio"] < THROUGHPUT_TARGET:
        raise CheckFailed(figure)
    return figure, {"larger": larger, "tiny": tiny}


def trials_per_hour(ctx: Context) -> tuple[str, dict[str, Any]]:
    """Trials per hour with 1, 2 and 4 trials per GPU (the 4 from four_trials_share_gpu)."""
    rates: dict[str, Any] = {}
    problems = []
    for key, per_gpu in (("gpu1", 1), ("gpu2", 2), ("gpu4", 4)):
        try:
            result = ctx.studies.get(key) if key == "gpu4" else run_study(key, ctx)[0]
            if not result or not result.get("trials"):
                raise CheckFailed("four_trials_share_gpu did not finish its study")
            wall = (result["summary"] or {}).get("duration_s") or result["seconds"]
            rates[per_gpu] = {"trials_per_hour": round(span_rate(result)),
                              "study_trials_per_hour": round(observe.per_hour(STUDIES[key].n_trials, wall)),
                              "study_seconds": wall}  # fmt: skip
        except CheckFailed as exc:
            problems.append(f"{per_gpu} per GPU: {exc}")
    base = rates.get(1, {}).get("trials_per_hour")
    parts = [f"{n}/GPU {r['trials_per_hour']}/h" + (f" ({r['trials_per_hour'] / base:.2f}x)" if base and n > 1 else "")
             for n, r in rates.items()]  # fmt: skip
    whole = ", ".join(f"{n}/GPU {r['study_trials_per_hour']}/h" for n, r in rates.items())
    figure = "; ".join(parts) + f" (first trial start to last end; whole study: {whole})"
    if problems:
        raise CheckFailed("; ".join(problems) + (f"; measured: {figure}" if rates else ""))
    return figure, {"per_gpu": rates}


@dataclass(frozen=True)
class Check:
    name: str
    timeout_s: float
    run: Callable[[Context], tuple[str, dict[str, Any]]]
    settings: tuple[str, ...] = ()  # what it runs, shown by --dry-run (study keys or commands)

    @property
    def summary(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


CHECKS = (
    Check("environment", 30, environment, ("nvidia-smi --query-gpu=...", ".venv/bin/python -c 'import torch; ...'")),
    Check("tiny_model", 150, tiny_model, ("scripts/gpu/probes.py model --cache outputs/models --build",)),
    Check("gpu_tests", 300, gpu_tests, (".venv/bin/python -m pytest -m gpu -q -p no:cacheprovider --junitxml=...",)),
    Check("four_trials_share_gpu", 120, four_trials_share_gpu, ("gpu4", "nvidia-smi every 0.25 s")),
    Check("memory_returns", 150, memory_returns, ("memory", "nvidia-smi every 0.1 s")),
    Check("four_bit", 120, four_bit, ("scripts/gpu/probes.py four-bit --model <tiny model>", "four_bit")),
    Check("sft_chat_four_bit", 120, sft_chat_four_bit, ("sft_chat",)),
    Check("throughput_vs_bare_peft", 150, throughput_vs_bare_peft, ("scripts/gpu/probes.py throughput --size larger --steps 60 --repeats 3",
                                                                    "scripts/gpu/probes.py throughput --size tiny")),
    Check("trials_per_hour", 150, trials_per_hour, ("gpu1", "gpu2", "(gpu4 from four_trials_share_gpu)")),
)  # fmt: skip
