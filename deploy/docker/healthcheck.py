"""Docker HEALTHCHECK of the agora image: gRPC health `Check` of the process's own service.

Kubernetes ignores HEALTHCHECK and uses the manifests' built-in gRPC probes; this serves `docker run`
and compose (`depends_on: condition: service_healthy`). Which port and service: from the flags, else
PID 1's command line (`agora chain|miner|validator start ...`, its `--port`, else the service's port
variable, else its default). Exit 0 when SERVING, 1 otherwise.

    python healthcheck.py                       # inside the container
    python healthcheck.py --port 50051 --service agora.chain.v1.Chain
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# command -> (gRPC service name, port environment variable, default port)
SERVICES = {
    "chain": ("agora.chain.v1.Chain", "AGORA_CHAIN_PORT", 50051),
    "miner": ("agora.miner.v1.Miner", "AGORA_MINER_PORT", 8091),
    "validator": ("agora.validator.v1.Validator", "AGORA_VALIDATOR_PORT", 8092),
}


def target_from_cmdline(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """(port, service) for a process started as `agora <command> start [--port N] ...`."""
    command = next((a for a in argv if a in SERVICES), None)
    if command is None:
        raise ValueError(f"not an agora service command line: {' '.join(argv)!r}")
    service, port_env, default = SERVICES[command]
    port = str(default)
    if env.get(port_env):
        port = env[port_env]
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv):
            port = argv[i + 1]
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
    return int(port), service


def check(port: int, service: str, timeout: float = 3.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            print(f"127.0.0.1:{port} {service or '(server)'}: {exc.code().name}", file=sys.stderr)
            return False
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"127.0.0.1:{port} {service or '(server)'}: {status}", file=sys.stderr)
    return serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="gRPC port (default: from PID 1's command line)")
    parser.add_argument("--service", help='service name to check; "" for the whole server')
    args = parser.parse_args(argv)
    port, service = args.port, args.service
    if port is None or service is None:
        cmdline = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
        found_port, found_service = target_from_cmdline(cmdline, dict(os.environ))
        port = found_port if port is None else port
        service = found_service if service is None else service
    return 0 if check(port, service) else 1


if __name__ == "__main__":
    sys.exit(main())
