"""`agora`: the command line, named after btcli's commands. Parser and dispatch only.

Every command returns an exit code: 0 on success, 1 for an expected failure (one line
`error: <code>: <details>` on stderr, no traceback), 2 for a usage error (as argparse does).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import services.cli.validator_cmds as validator_cmds
from services.cli import chain_cmds, miner_cmds, output, stake_cmds, subnet_cmds, wallet_cmds, weights_cmds
from services.cli.output import CommandFailed
from services.common.errors import AgoraError

CHAIN_ENV = "AGORA_CHAIN"
DEFAULT_CHAIN = "127.0.0.1:50051"


def build_parser() -> argparse.ArgumentParser:
    default_chain = os.environ.get(CHAIN_ENV) or DEFAULT_CHAIN
    # On every command too, so `agora wallet balance ... --json` works; SUPPRESS keeps a value
    # given before the command from being reset by the command's own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--chain", default=argparse.SUPPRESS, metavar="HOST:PORT",
                        help=f"chain gRPC address (env {CHAIN_ENV}, default {DEFAULT_CHAIN})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")

    parser = argparse.ArgumentParser(
        prog="agora", allow_abbrev=False,
        description="Agora: wallets, the chain, subnets, stake and weights. Run `agora COMMAND --help` for details.",
    )
    parser.add_argument("--chain", default=default_chain, metavar="HOST:PORT",
                        help=f"chain gRPC address (env {CHAIN_ENV}, default {DEFAULT_CHAIN})")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    groups = parser.add_subparsers(dest="group", required=True,
                                   metavar="{wallet,chain,subnets,stake,delegate,weights,root,miner}")
    wallet_cmds.register(groups, common)
    chain_cmds.register(groups, common)
    subnet_cmds.register(groups, common)
    stake_cmds.register(groups, common)
    weights_cmds.register(groups, common)
    miner_cmds.register(groups, common)
    validator_cmds.register(groups, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.func(args)
    except CommandFailed as exc:
        output.error(exc.code, exc.message)
    except AgoraError as exc:
        output.error(_code_name(exc), str(exc))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `agora chain blocks --follow | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not _report_rpc_error(exc, args.chain):
            raise
    return 1


def _code_name(exc: AgoraError) -> str:
    """The gRPC code the server would answer with, so local and remote errors read the same."""
    from services.common.error_mapping import status_code_for

    return status_code_for(exc).name


def _report_rpc_error(exc: Exception, target: str) -> bool:
    import grpc

    if not isinstance(exc, grpc.aio.AioRpcError):
        return False
    code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and ("connect" in details or "resolv" in details):
        details = f"no chain answers at {target} ({details}); is it running? (--chain or {CHAIN_ENV})"
    elif code is grpc.StatusCode.UNAVAILABLE:
        details = f"the chain at {target} is unavailable: {details}"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"the chain at {target} did not answer in time ({details})"
    output.error(code.name, details)
    return True


if __name__ == "__main__":
    sys.exit(main())
