"""ChainClient: what the CLI, miners, validators and benchmarks use to talk to the chain.

One long-lived channel per process (Bittensor's SDK leaked connections on resync).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from bittensor_wallet import Keypair


def sign_extrinsic(keypair: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
    payload = chain_pb2.ExtrinsicPayload(signer=keypair.ss58_address, nonce=nonce, chain_id=chain_id, call=call)
    data = payload.SerializeToString(deterministic=True)
    return chain_pb2.Extrinsic(payload=data, signature=keypair.sign(data))


def transfer_call(dest: str, amount: int) -> chain_pb2.Call:
    return chain_pb2.Call(transfer=chain_pb2.Transfer(dest=dest, amount=amount))


class ChainClient:
    def __init__(self, target: str, *, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = chain_pb2_grpc.ChainStub(self.channel)
        self._chain_id: bytes | None = None

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def info(self) -> chain_pb2.ChainInfo:
        info = await self.stub.GetChainInfo(chain_pb2.GetChainInfoRequest(), timeout=self.timeout)
        self._chain_id = info.genesis_hash
        return info

    async def chain_id(self) -> bytes:
        if self._chain_id is None:
            await self.info()
        assert self._chain_id is not None
        return self._chain_id

    async def account(self, address: str) -> chain_pb2.Account:
        return await self.stub.GetAccount(chain_pb2.GetAccountRequest(address=address), timeout=self.timeout)

    async def block(self, number: int | None = None, block_hash: bytes | None = None) -> chain_pb2.Block:
        if block_hash is not None:
            request = chain_pb2.GetBlockRequest(hash=block_hash)
        elif number is not None:
            request = chain_pb2.GetBlockRequest(number=number)
        else:
            request = chain_pb2.GetBlockRequest()
        return await self.stub.GetBlock(request, timeout=self.timeout)

    async def blocks(self, from_number: int = 0) -> AsyncIterator[chain_pb2.Block]:
        async for block in self.stub.SubscribeBlocks(chain_pb2.SubscribeBlocksRequest(from_number=from_number)):
            yield block

    async def sign(self, keypair: Keypair, call: chain_pb2.Call, nonce: int | None = None) -> chain_pb2.Extrinsic:
        if nonce is None:
            nonce = (await self.account(keypair.ss58_address)).pool_nonce
        return sign_extrinsic(keypair, nonce, await self.chain_id(), call)

    async def submit(self, xt: chain_pb2.Extrinsic, *, wait: bool = True,
                     timeout_ms: int = 0) -> chain_pb2.SubmitExtrinsicResponse:
        request = chain_pb2.SubmitExtrinsicRequest(extrinsic=xt, wait_for_inclusion=wait, timeout_ms=timeout_ms)
        return await self.stub.SubmitExtrinsic(request, timeout=self.timeout + timeout_ms / 1000)

    async def transfer(self, keypair: Keypair, dest: str, amount: int, *,
                       wait: bool = True) -> chain_pb2.SubmitExtrinsicResponse:
        return await self.submit(await self.sign(keypair, transfer_call(dest, amount)), wait=wait)

    async def status(self, xt_hash: bytes) -> chain_pb2.ExtrinsicStatus:
        return await self.stub.GetExtrinsicStatus(chain_pb2.GetExtrinsicStatusRequest(hash=xt_hash),
                                                  timeout=self.timeout)
