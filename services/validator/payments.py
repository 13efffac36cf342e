"""Pay-per-query: a user's signed transfer to the validator's coldkey, checked here and then settled
on the chain (submitted with wait_for_inclusion) before any miner is asked.

The checks that need no chain run first, cheapest first, so that a bad payment is refused without a
round trip and costs the user nothing: is there a payment, is it a transfer, to our coldkey, of at
least the fee, signed by the payer it names, for this chain, by a valid signature, and not one we
have already taken. Then the chain decides what depends on state (balance, nonce); a reused nonce
or an extrinsic it already knows is a replay. Only an included, successful transfer is a payment.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import grpc
from grpc import aio

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient
from services.chain.codec import extrinsic_hash
from services.common import keys
from services.common.errors import (
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

MAX_PAYMENT_BYTES = 4096
SEEN_LIMIT = 100_000       # payment hashes remembered locally (the chain's nonce check is the real guard)


class PaymentRequired(PermissionDenied):
    """A query without a payment, when the validator charges a fee."""


class PaymentMalformed(InvalidRequest):
    """The payment is not a decodable transfer extrinsic."""


class WrongPayee(FailedPrecondition):
    """The transfer pays someone else."""


class Underpaid(FailedPrecondition):
    """The transfer carries less than the fee."""


class PayerMismatch(PermissionDenied):
    """The request's payer did not sign the payment."""


class BadPaymentSignature(Unauthenticated):
    """The payment's signature does not verify, or it is signed for another chain."""


class PaymentReplayed(Conflict):
    """The payment (or its nonce) was used already."""


class PaymentFailed(FailedPrecondition):
    """The chain refused the payment or applied it without effect (e.g. insufficient balance)."""


class PaymentPending(Unavailable):
    """The payment was queued but not included in time: check its status before paying again."""


@dataclass(frozen=True, slots=True)
class Payment:
    signer: str
    dest: str
    amount_rao: int
    nonce: int
    hash: bytes
    extrinsic: chain_pb2.Extrinsic


@dataclass(frozen=True, slots=True)
class Receipt:
    payment: Payment
    block: int


def check_payment(xt: chain_pb2.Extrinsic | None, *, payee: str, fee_rao: int, chain_id: bytes,
                  payer: str = "") -> Payment:
    """The payment if it is a transfer of >= fee_rao to `payee` signed by `payer` for this chain."""
    if xt is None or not xt.payload:
        raise PaymentRequired(f"a query costs {fee_rao} rao: attach a signed transfer of at least that to {payee}")
    if len(xt.payload) > MAX_PAYMENT_BYTES:
        raise PaymentMalformed(f"payment payload is {len(xt.payload)} bytes; a transfer takes far less")
    try:
        payload = chain_pb2.ExtrinsicPayload.FromString(xt.payload)
    except Exception:
        raise PaymentMalformed("payment payload is not an ExtrinsicPayload") from None
    if payload.call.WhichOneof("call") != "transfer":
        raise PaymentMalformed(f"payment must be a transfer, got {payload.call.WhichOneof('call') or 'no call'}")
    transfer = payload.call.transfer
    if transfer.dest != payee:
        raise WrongPayee(f"payment goes to {transfer.dest}; this validator is paid at {payee}")
    if transfer.amount < fee_rao:
        raise Underpaid(f"payment of {transfer.amount} rao is below the fee of {fee_rao} rao")
    if payer and payload.signer != payer:
        raise PayerMismatch(f"payment is signed by {payload.signer}, not by the payer {payer}")
    if payload.chain_id != chain_id:
        raise BadPaymentSignature("payment is signed for another chain")
    if not keys.verify(payload.signer, xt.payload, xt.signature):
        raise BadPaymentSignature(f"payment signature does not match its signer {payload.signer}")
    return Payment(payload.signer, transfer.dest, transfer.amount, payload.nonce,
                   extrinsic_hash(xt.payload, xt.signature), xt)


class Cashier:
    """Checks payments and settles them on the chain, each at most once."""

    def __init__(self, chain: ChainClient, *, payee: str, fee_rao: int, chain_id: bytes,
                 inclusion_timeout_ms: int = 0) -> None:
        self.chain = chain
        self.payee = payee
        self.fee_rao = fee_rao
        self.chain_id = chain_id
        self.inclusion_timeout_ms = inclusion_timeout_ms
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def check(self, xt: chain_pb2.Extrinsic | None, payer: str) -> Payment:
        payment = check_payment(xt, payee=self.payee, fee_rao=self.fee_rao, chain_id=self.chain_id, payer=payer)
        if payment.hash in self._seen:
            raise PaymentReplayed(f"payment {payment.hash.hex()} was already used")
        return payment

    async def settle(self, payment: Payment) -> Receipt:
        """Submit and wait for the block; raise if the user did not pay."""
        self._remember(payment.hash)   # before the await: a concurrent replay is refused here
        try:
            response = await self.chain.submit(payment.extrinsic, wait=True, timeout_ms=self.inclusion_timeout_ms)
        except aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code is grpc.StatusCode.ALREADY_EXISTS or (
                    code is grpc.StatusCode.UNAUTHENTICATED and "already used" in details):
                raise PaymentReplayed(f"the chain refused the payment as used: {details}") from None
            self._forget(payment.hash)   # refused at submit: the user may fix it and send the same again
            if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED):
                raise PaymentFailed(f"the chain refused the payment: {details}") from None
            raise Unavailable(f"the chain did not take the payment ({code.name}: {details}); retry") from None
        status = response.status
        S = chain_pb2.ExtrinsicStatus
        if status.state == S.INCLUDED and status.success:
            return Receipt(payment, status.block_number)
        if status.state == S.INCLUDED:
            raise PaymentFailed(f"the payment failed in block {status.block_number}: {status.error}")
        if status.state == S.DROPPED:
            raise PaymentFailed(f"the payment was dropped: {status.error}")
        raise PaymentPending(f"payment {payment.hash.hex()} is not in a block yet ({S.State.Name(status.state)}); "
                             "check its status before paying again")

    def _remember(self, xt_hash: bytes) -> None:
        self._seen[xt_hash] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _forget(self, xt_hash: bytes) -> None:
        self._seen.pop(xt_hash, None)
