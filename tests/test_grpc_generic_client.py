"""The README's grpcurl lines, made by a generic reflection client with no project stubs, against a
running chain, miner and validator: list, describe, health, and a real call on each (read a block,
a miner's Info signed by `agora miner sign-request`, a paid validator Query signed by
`agora query --sign-only`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from services.cli.signing import dev_hotkey
from services.validator.items import Task
from services.validator.main import Validator
from tests.reflection_client import ReflectionClient
from tests.test_validator import FEE, PAYEE, TAO, VALIDATOR, Oracle, make_net, write_data

ROOT = Path(__file__).resolve().parents[1]
CALLER = dev_hotkey("Bob", "validator")   # `--dev Bob --wallet.hotkey validator`, as in the README


async def agora(chain: str, *args: str) -> dict:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli.main", "--chain", chain, *args,
                                                cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def health(client: ReflectionClient, service: str) -> str:
    return (await client.call("grpc.health.v1.Health", "Check", {"service": service}))["status"]


async def test_a_generic_client_lists_describes_and_calls_every_service(redis_server, tmp_path: Path) -> None:
    data = write_data(tmp_path)
    async for net in make_net(redis_server, data):
        net.callers[CALLER.ss58_address] = TAO
        (miner,) = await net.add_miners([Oracle(data)])
        validator = Validator(net.settings(metrics_port=None), hotkey=VALIDATOR, coldkey=PAYEE,
                              data=data[Task.NEXT_TOKEN])
        await validator.start()
        clients = {name: ReflectionClient(target) for name, target in (
            ("chain", net.chain), ("miner", f"127.0.0.1:{miner.port}"), ("validator", f"127.0.0.1:{validator.port}"))}
        try:
            chain, mc, vc = clients["chain"], clients["miner"], clients["validator"]
            for client, service in ((chain, "agora.chain.v1.Chain"), (mc, "agora.miner.v1.Miner"),
                                    (vc, "agora.validator.v1.Validator")):
                listed = await client.list_services()
                assert service in listed and "grpc.health.v1.Health" in listed
                assert await client.describe(service)
                assert await health(client, service) == "SERVING"

            # grpcurl -d '{"number": 1}' ... agora.chain.v1.Chain/GetBlock
            block = await chain.call("agora.chain.v1.Chain", "GetBlock", {"number": 1})
            assert block["header"]["number"] == "1", block

            # grpcurl -d "$(agora miner sign-request --method Info --miner-hotkey SS58 --dev Bob ...)" ... Miner/Info
            signed = await agora(net.chain, "miner", "sign-request", "--method", "Info", "--miner-hotkey",
                                 miner.hotkey.ss58_address, "--dev", "Bob", "--wallet.hotkey", "validator")
            info = await mc.call("agora.miner.v1.Miner", "Info", signed)
            assert info["hotkey"] == miner.hotkey.ss58_address and info["task"] == "NEXT_TOKEN"

            # grpcurl -d "$(agora query --netuid N --dev Alice --sign-only 'prompt')" ... Validator/Query
            assert (await vc.call("agora.validator.v1.Validator", "Info", {}))["feeRao"] == str(FEE)
            await validator.loop.run_round()   # scores exist, so the query is routed to a miner that answered
            paid = await agora(net.chain, "query", "--netuid", str(net.netuid), "--validator",
                               f"127.0.0.1:{validator.port}", "--dev", "Alice", "--sign-only", "The capital of")
            assert paid["payment"]["payload"] and paid["payer"] == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
            reply = await vc.call("agora.validator.v1.Validator", "Query", paid)
            assert reply["hotkey"] == miner.hotkey.ss58_address and reply["text"]
            scores = await vc.call("agora.validator.v1.Validator", "Scores", {"netuid": net.netuid})
            assert scores["miners"][0]["hotkey"] == miner.hotkey.ss58_address
        finally:
            for client in clients.values():
                await client.close()
            await validator.stop()
