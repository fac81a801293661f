"""Real services the tests start on 127.0.0.1 (and stop: only what they started, by process
group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(process: subprocess.Popen, timeout: float) -> None:  # type: ignore[type-arg]
    """End a service we started in its own process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1, in its own process group so we stop only it."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                   "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]  # fmt: skip
        self.log = (root / "server.log").open("w")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        stop_group(self.process, timeout=20)
        self.log.close()


class RayHead:
    """A Ray head node on 127.0.0.1 declaring the CPUs and GPUs it is told to (Ray takes a
    declared GPU count as it is), so a test can see what a study does on a cluster with GPUs.
    Its clients need ``env`` (its authentication token); its own environment has none of the
    hub's settings, as on a cluster set up elsewhere, plus ``env``. Ready once `ray start --block` says
    the runtime started; stopped by process group."""

    def __init__(
        self, num_cpus: int = 1, num_gpus: int = 0, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray = str(Path(sys.executable).with_name("ray"))
        command = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                   f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", "--include-dashboard=false",
                   "--disable-usage-stats"]  # fmt: skip
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, env={**base, **(env or {}), **self.env})  # fmt: skip
        said = []
        assert self.process.stdout is not None
        for line in self.process.stdout:  # the head speaks until it is up, then blocks
            said.append(line)
            if "Ray runtime started" in line:
                return
        self.stop()
        raise RuntimeError("ray head did not start: " + "".join(said)[-2000:])

    def stop(self) -> None:
        stop_group(self.process, timeout=30)
