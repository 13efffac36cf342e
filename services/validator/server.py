"""gRPC glue: agora.validator.v1.Validator. Protos in, the domain call, protos out; no logic here."""

from __future__ import annotations

from grpc import aio

from agora.chain.v1 import chain_pb2
from agora.validator.v1 import validator_pb2, validator_pb2_grpc
from services.chain.subnets import TASKS
from services.common.errors import InvalidRequest
from services.validator.loop import ValidatorLoop
from services.validator.queries import (
    TASK_KINDS,
    QueryDesk,
    UserQuery,
    embed_query,
    generate_query,
    next_word_query,
    translate_query,
)

SERVICE = "agora.validator.v1.Validator"
SERVICE_DESCRIPTOR = validator_pb2.DESCRIPTOR.services_by_name["Validator"]


def query_from_proto(request: validator_pb2.QueryRequest) -> UserQuery:
    kind = request.WhichOneof("input")
    if request.ensemble > 1 and kind != "next_word":
        raise InvalidRequest("ensemble mixes next-word distributions: it applies to next_word, "
                             f"not {kind or 'nothing'}")
    if kind == "generate":
        g = request.generate
        return generate_query(g.prompt, g.max_tokens, g.temperature)
    if kind == "translate":
        return translate_query(request.translate.sentences, request.translate.target_language)
    if kind == "embed":
        return embed_query(request.embed.texts)
    if kind == "next_word":
        return next_word_query(request.next_word.prefixes, request.next_word.top_k, request.ensemble)
    raise InvalidRequest("the query has no input: set generate, translate, embed or next_word")


class ValidatorService(validator_pb2_grpc.ValidatorServicer):
    def __init__(self, *, loop: ValidatorLoop, desk: QueryDesk, coldkey: str, chain_id: bytes, version: str) -> None:
        self.loop = loop
        self.desk = desk
        self.coldkey = coldkey
        self.chain_id = chain_id
        self.version = version

    def _check_netuid(self, netuid: int) -> None:
        if netuid and netuid != self.loop.netuid:
            raise InvalidRequest(f"this validator serves subnet {self.loop.netuid}, not {netuid}")

    async def Info(self, request: validator_pb2.InfoRequest, context: aio.ServicerContext
                   ) -> validator_pb2.InfoResponse:
        task = self.desk.task
        return validator_pb2.InfoResponse(
            netuid=self.loop.netuid, task=TASKS.get(task, (0, ""))[0], hotkey=self.loop.hotkey.ss58_address,
            coldkey=self.coldkey, fee_rao=self.desk.cashier.fee_rao, version=self.version, chain_id=self.chain_id,
            miners=len(self.loop.ranked()), rounds=self.loop.rounds, methods=list(TASK_KINDS.get(task, ())),
        )

    async def Query(self, request: validator_pb2.QueryRequest, context: aio.ServicerContext
                    ) -> validator_pb2.QueryResponse:
        self._check_netuid(request.netuid)
        query = query_from_proto(request)
        payment = request.payment if request.HasField("payment") else None
        result = await self.desk.serve(query, payment, request.payer, request.timeout_ms / 1000 or None)
        routed, receipt, answer = result.routed, result.receipt, result.answer
        response = validator_pb2.QueryResponse(uid=routed.endpoint.uid, hotkey=routed.endpoint.hotkey,
                                               attempts=routed.attempts, miner_seconds=routed.seconds)
        for r, share in result.contributors:
            response.contributors.add(uid=r.endpoint.uid, hotkey=r.endpoint.hotkey, share=share, seconds=r.seconds)
        if query.kind == "generate":
            response.text = answer
        elif query.kind == "translate":
            response.translations.translations.extend(answer)
        elif query.kind == "next_word":
            for words in answer:
                response.next_words.distributions.add().words.extend(
                    validator_pb2.WordProbability(word=w, probability=p) for w, p in words)
        else:
            response.embeddings.embeddings.extend(validator_pb2.Embedding(values=v) for v in answer)
        if receipt is not None:
            response.payment_hash = receipt.payment.hash
            response.payment_block = receipt.block
            response.fee_rao = receipt.payment.amount_rao
        return response

    async def Scores(self, request: validator_pb2.ScoresRequest, context: aio.ServicerContext
                     ) -> validator_pb2.ScoresResponse:
        self._check_netuid(request.netuid)
        loop = self.loop
        view = loop.view
        weights = loop.last_weights.weights if loop.last_weights else {}
        rows = []
        for uid, record in loop.records.items():
            if uid not in loop.ema.values and not record.endpoint:
                continue   # a validator or a uid never scored
            rows.append(validator_pb2.MinerScore(
                uid=uid, hotkey=record.hotkey, ema=loop.average_score(uid), last_score=record.last_score,
                last_metric=record.last_metric, answered=record.answered, failed=record.failed,
                timeouts=record.timeouts, weight=weights.get(uid, 0), endpoint=record.endpoint,
            ))
        rows.sort(key=lambda r: (-r.ema, r.uid))
        task = view.task if view else self.desk.task
        return validator_pb2.ScoresResponse(
            netuid=loop.netuid, task=TASKS.get(task, (chain_pb2.TASK_UNSPECIFIED, ""))[0],
            metric=TASKS.get(task, (0, ""))[1], rounds=loop.rounds,
            block=loop.last_round.block if loop.last_round else 0,
            last_weights_block=loop.last_weights.block if loop.last_weights else 0, miners=rows,
        )


def add_to_server(service: ValidatorService, server: aio.Server) -> None:
    validator_pb2_grpc.add_ValidatorServicer_to_server(service, server)
