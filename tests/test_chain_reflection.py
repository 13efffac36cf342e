"""The chain answers a generic client that has no project stubs: the calls the README shows with grpcurl."""

import pytest

from tests.reflection_client import V1, V1ALPHA, ReflectionClient


@pytest.mark.parametrize("version", [V1, V1ALPHA])
async def test_generic_client_lists_describes_and_calls_the_chain(chain, version):
    rc = ReflectionClient(f"127.0.0.1:{chain.server.port}", version)
    try:
        services = await rc.list_services()
        assert "agora.chain.v1.Chain" in services and "grpc.health.v1.Health" in services
        methods = await rc.describe("agora.chain.v1.Chain")
        assert {"SubmitExtrinsic", "GetBlock", "GetChainInfo", "SubscribeBlocks"} <= set(methods)
        health = await rc.call("grpc.health.v1.Health", "Check", {"service": "agora.chain.v1.Chain"})
        assert health["status"] == "SERVING"
        info = await rc.call("agora.chain.v1.Chain", "GetChainInfo")
        assert info["network"].startswith("test-")
        block = await rc.call("agora.chain.v1.Chain", "GetBlock", {"number": 0})
        assert "hash" in block["header"]
        alice = await rc.call("agora.chain.v1.Chain", "GetAccount",
                              {"address": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"})
        assert int(alice["free"]) > 0
        streamed = await rc.call("agora.chain.v1.Chain", "SubscribeBlocks", {"fromNumber": 1})
        assert streamed["header"]["number"] == "1"
    finally:
        await rc.close()
