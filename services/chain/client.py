"""ChainClient: what the CLI, miners, validators and benchmarks use to talk to the chain.

One long-lived channel per process (Bittensor's SDK leaked connections on resync).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from services.chain.subnets import TASKS

# A 4096-uid metagraph with weights and bonds runs to a few MB; gRPC's default receive cap is 4 MB.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024


def sign_extrinsic(keypair: Keypair, nonce: int, chain_id: bytes, call: chain_pb2.Call) -> chain_pb2.Extrinsic:
    payload = chain_pb2.ExtrinsicPayload(signer=keypair.ss58_address, nonce=nonce, chain_id=chain_id, call=call)
    data = payload.SerializeToString(deterministic=True)
    return chain_pb2.Extrinsic(payload=data, signature=keypair.sign(data))


def transfer_call(dest: str, amount: int) -> chain_pb2.Call:
    return chain_pb2.Call(transfer=chain_pb2.Transfer(dest=dest, amount=amount))


# Call builders. Sign coldkey calls with the coldkey and hotkey calls (serve_axon, set_weights,
# set_root_weights) with the hotkey.


def register_network_call(task: str, name: str, hotkey: str) -> chain_pb2.Call:
    """task: "next-token", "translation" or "embedding"."""
    enum = TASKS[task][0] if task in TASKS else 0
    return chain_pb2.Call(register_network=chain_pb2.RegisterNetwork(task=enum, name=name, hotkey=hotkey))


def set_hyperparameter_call(netuid: int, name: str, value: int) -> chain_pb2.Call:
    return chain_pb2.Call(set_hyperparameter=chain_pb2.SetHyperparameter(netuid=netuid, name=name, value=value))


def burned_register_call(netuid: int, hotkey: str, max_burn: int = 0) -> chain_pb2.Call:
    return chain_pb2.Call(burned_register=chain_pb2.BurnedRegister(netuid=netuid, hotkey=hotkey, max_burn=max_burn))


def serve_axon_call(netuid: int, host: str, port: int, protocol: str = "grpc", version: int = 0) -> chain_pb2.Call:
    return chain_pb2.Call(serve_axon=chain_pb2.ServeAxon(netuid=netuid, host=host, port=port, protocol=protocol,
                                                         version=version))


def add_stake_call(hotkey: str, amount: int) -> chain_pb2.Call:
    return chain_pb2.Call(add_stake=chain_pb2.AddStake(hotkey=hotkey, amount=amount))


def remove_stake_call(hotkey: str, amount: int) -> chain_pb2.Call:
    return chain_pb2.Call(remove_stake=chain_pb2.RemoveStake(hotkey=hotkey, amount=amount))


def set_delegate_take_call(hotkey: str, take: int) -> chain_pb2.Call:
    return chain_pb2.Call(set_delegate_take=chain_pb2.SetDelegateTake(hotkey=hotkey, take=take))


def set_weights_call(netuid: int, uids: list[int], weights: list[int], version_key: int = 0) -> chain_pb2.Call:
    return chain_pb2.Call(set_weights=chain_pb2.SetWeights(netuid=netuid, uids=uids, weights=weights,
                                                           version_key=version_key))


def commit_weights_call(netuid: int, commit_hash: bytes) -> chain_pb2.Call:
    """Commit-reveal, step 1; the hash from weight_commit_hash (services.chain.codec)."""
    return chain_pb2.Call(commit_weights=chain_pb2.CommitWeights(netuid=netuid, commit_hash=commit_hash))


def reveal_weights_call(netuid: int, uids: list[int], weights: list[int], salt: list[int],
                        version_key: int = 0) -> chain_pb2.Call:
    """Commit-reveal, step 2: exactly the uids, weights (same order), salt and version_key hashed."""
    return chain_pb2.Call(reveal_weights=chain_pb2.RevealWeights(netuid=netuid, uids=uids, weights=weights,
                                                                 salt=salt, version_key=version_key))


def root_register_call(hotkey: str) -> chain_pb2.Call:
    return chain_pb2.Call(root_register=chain_pb2.RootRegister(hotkey=hotkey))


def set_root_weights_call(netuids: list[int], weights: list[int], version_key: int = 0) -> chain_pb2.Call:
    return chain_pb2.Call(set_root_weights=chain_pb2.SetRootWeights(netuids=netuids, weights=weights,
                                                                    version_key=version_key))


class ChainClient:
    def __init__(self, target: str, *, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)])
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

    async def call(self, keypair: Keypair, call: chain_pb2.Call, *, wait: bool = True,
                   nonce: int | None = None) -> chain_pb2.SubmitExtrinsicResponse:
        """Sign `call` with keypair (the coldkey or hotkey the call needs) and submit it."""
        return await self.submit(await self.sign(keypair, call, nonce), wait=wait)

    async def subnets(self) -> list[chain_pb2.SubnetInfo]:
        response = await self.stub.ListSubnets(chain_pb2.ListSubnetsRequest(), timeout=self.timeout)
        return list(response.subnets)

    async def subnet(self, netuid: int) -> chain_pb2.SubnetInfo:
        return await self.stub.GetSubnet(chain_pb2.GetSubnetRequest(netuid=netuid), timeout=self.timeout)

    async def metagraph(self, netuid: int, *, weights: bool = False, bonds: bool = False) -> chain_pb2.Metagraph:
        request = chain_pb2.GetMetagraphRequest(netuid=netuid, include_weights=weights, include_bonds=bonds)
        return await self.stub.GetMetagraph(request, timeout=self.timeout)

    async def stake(self, coldkey: str) -> chain_pb2.StakeInfo:
        return await self.stub.GetStake(chain_pb2.GetStakeRequest(coldkey=coldkey), timeout=self.timeout)

    async def delegates(self) -> list[chain_pb2.DelegateInfo]:
        response = await self.stub.ListDelegates(chain_pb2.ListDelegatesRequest(), timeout=self.timeout)
        return list(response.delegates)
