"""Child processes of a local network: started in order, stopped in reverse, none left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.common.redis_server import free_port

_taken: set[int] = set()


def port_or_free(wanted: int) -> int:
    """The well-known port when it is free (so the README's grpcurl lines work), else the next free one
    after it that this run has not handed out yet, else any free port."""
    for candidate in range(wanted, wanted + 50):
        if candidate in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        _taken.add(candidate)
        return candidate
    port = free_port()
    _taken.add(port)
    return port


# glibc gives threads that allocate their own malloc arenas (up to 8 per core), and each keeps the
# memory freed into it; a model server's gRPC and torch threads would each hold some. Two arenas per
# process keep a dozen model processes further from a 24 GiB machine's limit (the environment's
# own setting wins).
CHILD_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


@dataclass
class Supervisor:
    """Owns every child it starts. Each child runs in its own session so a Ctrl-C in the terminal
    reaches only `make run`, which then stops them in order (chain before Redis, so the chain's
    last writes land)."""

    log_dir: Path
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**CHILD_DEFAULTS, **os.environ, **(env or {})}, start_new_session=True,
            )
        self.children.append((name, proc))
        return proc

    def agora(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "services.cli.main", *args], env)

    def peak_rss_bytes(self) -> int:
        """Sum of the children's peak resident memory (VmHWM), while they still run."""
        total = 0
        for _, proc in self.children:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        return total

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited with code {proc.returncode}; its log ends:\n{tail}")

    def stop_all(self, timeout: float = 10.0) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.children.clear()
