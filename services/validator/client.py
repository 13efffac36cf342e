"""A user's side of a validator: find one on a subnet, read its fee, pay and query.

    async with ChainClient(chain) as c:
        target = await discover(c, netuid)
        reply = await paid_query(c, target, keypair, generate_request(netuid, "The capital of France is"))

The payment is a transfer of the validator's advertised fee to its coldkey, signed here with the
payer's next nonce; the validator submits it and asks a miner only once it is in a block.
"""

from __future__ import annotations

from grpc import aio

from agora.validator.v1 import validator_pb2, validator_pb2_grpc
from services.chain.client import ChainClient, transfer_call
from services.common.errors import FailedPrecondition, InvalidRequest, NotFound
from services.validator.subnet import read_subnet

QUERY_TIMEOUT_S = 120.0


async def discover(chain: ChainClient, netuid: int) -> str:
    """HOST:PORT of the subnet's most staked validator serving an endpoint."""
    view = await read_subnet(chain, netuid)
    found = view.validators()
    if not found:
        raise NotFound(f"no validator serves an endpoint on subnet {netuid}; name one with --validator HOST:PORT")
    return found[0].axon.target  # type: ignore[union-attr]


async def call(target: str, method: str, request, timeout: float = QUERY_TIMEOUT_S):
    """One unary call on agora.validator.v1.Validator at `target`; raises aio.AioRpcError."""
    async with aio.insecure_channel(target) as channel:
        stub = validator_pb2_grpc.ValidatorStub(channel)
        return await getattr(stub, method)(request, timeout=timeout)


async def paid_query(chain: ChainClient, target: str, keypair, request: validator_pb2.QueryRequest, *,
                     max_fee_rao: int | None = None, info: validator_pb2.InfoResponse | None = None,
                     timeout: float = QUERY_TIMEOUT_S) -> validator_pb2.QueryResponse:
    """Pay `target`'s fee from `keypair` (a coldkey) and send `request`."""
    info = info or await call(target, "Info", validator_pb2.InfoRequest(), timeout)
    paid = await with_payment(chain, target, info, keypair, request, max_fee_rao=max_fee_rao)
    return await call(target, "Query", paid, timeout)


async def with_payment(chain: ChainClient, target: str, info: validator_pb2.InfoResponse, keypair,
                       request: validator_pb2.QueryRequest, *,
                       max_fee_rao: int | None = None) -> validator_pb2.QueryRequest:
    """`request` with its payer and a signed transfer of the fee `info` advertises. Refuses, before
    signing anything, a validator of another subnet or chain, or one asking more than `max_fee_rao`."""
    if info.netuid != request.netuid:
        raise InvalidRequest(f"{target} validates subnet {info.netuid}, not {request.netuid}")
    if max_fee_rao is not None and info.fee_rao > max_fee_rao:
        raise FailedPrecondition(f"{target} asks {info.fee_rao} rao per query, above the most you allow "
                                 f"({max_fee_rao} rao)")
    paid = validator_pb2.QueryRequest()
    paid.CopyFrom(request)
    paid.payer = keypair.ss58_address
    if info.fee_rao:
        if await chain.chain_id() != info.chain_id:
            raise FailedPrecondition(f"{target} is paid on another chain than this one")
        paid.payment.CopyFrom(await chain.sign(keypair, transfer_call(info.coldkey, info.fee_rao)))
    return paid


def generate_request(netuid: int, prompt: str, max_tokens: int = 0, temperature: float = 0.0):
    return validator_pb2.QueryRequest(netuid=netuid, generate=validator_pb2.GenerateInput(
        prompt=prompt, max_tokens=max_tokens, temperature=temperature))


def translate_request(netuid: int, sentences: list[str], target_language: str):
    return validator_pb2.QueryRequest(netuid=netuid, translate=validator_pb2.TranslateInput(
        sentences=sentences, target_language=target_language))


def embed_request(netuid: int, texts: list[str]):
    return validator_pb2.QueryRequest(netuid=netuid, embed=validator_pb2.EmbedInput(texts=texts))
