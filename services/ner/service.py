"""gRPC ``mofi.v1.EntityExtractor`` over one :class:`~mofi_platform.services.ner.extractor.Extractor`.

Each call's texts are validated first (INVALID_ARGUMENT names the item and the reason), then go to
the model through a dynamic batcher, so concurrent single-text calls share one spaCy/MiniLM pass.
A caller's deadline bounds the wait; a call past its deadline gets DEADLINE_EXCEEDED.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future

import grpc

from mofi.v1 import ner_pb2, ner_pb2_grpc, records_pb2
from mofi_platform.services.common.deadline import result_within_deadline
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.ner.extractor import Extraction, Extractor

__all__ = ["EntityExtractorService", "SERVICE_NAME", "to_proto"]

SERVICE_NAME = ner_pb2.DESCRIPTOR.services_by_name["EntityExtractor"].full_name


def to_proto(extraction: Extraction) -> tuple[list[records_pb2.Mention], list[records_pb2.EntityCandidate]]:
    mentions = [records_pb2.Mention(text=m.text, start=m.start, end=m.end, label=m.label) for m in extraction.mentions]
    candidates = [
        records_pb2.EntityCandidate(
            entity_id=c.entity.id,
            name=c.entity.name,
            description=c.entity.description,
            link_score=c.score,
            method=c.method,
            mention_index=c.mention_index,
        )
        for c in extraction.candidates
    ]
    return mentions, candidates


class EntityExtractorService(ner_pb2_grpc.EntityExtractorServicer):
    """``batcher.submit(text) -> Future[Extraction]`` (a DynamicBatcher over ``Extractor.extract``)."""

    def __init__(self, extractor: Extractor, batcher, max_batch_items: int = 1024):
        self.extractor = extractor
        self.batcher = batcher
        self.max_batch_items = max_batch_items

    def _validate(self, req: ner_pb2.ExtractRequest, where: str = "") -> str:
        try:
            return self.extractor.validate(req.text)
        except InvalidInput as e:
            raise InvalidInput(f"{where}{e.reason}") from None

    def _reply(self, request_id: str, fut: Future, context: grpc.ServicerContext) -> ner_pb2.ExtractResponse:
        extraction = result_within_deadline(fut, context)
        mentions, candidates = to_proto(extraction)
        return ner_pb2.ExtractResponse(request_id=request_id, mentions=mentions, candidates=candidates)

    def Extract(self, request, context):
        return self._reply(request.request_id, self.batcher.submit(self._validate(request)), context)

    def ExtractBatch(self, request, context):
        if len(request.items) > self.max_batch_items:
            raise InvalidInput(f"{len(request.items)} items; at most {self.max_batch_items} per call")
        texts = [self._validate(item, f"item {i}: ") for i, item in enumerate(request.items)]
        futures = [self.batcher.submit(t) for t in texts]  # all valid: only then occupy the model
        return ner_pb2.ExtractBatchResponse(
            items=[self._reply(item.request_id, f, context) for item, f in zip(request.items, futures)]
        )

    def ExtractStream(self, request_iterator: Iterable[ner_pb2.ExtractRequest], context) -> Iterator:
        """Replies in request order; up to ``max_batch_items`` requests are in flight at once."""
        pending: list[tuple[str, Future]] = []
        for i, request in enumerate(request_iterator):
            pending.append((request.request_id, self.batcher.submit(self._validate(request, f"request {i}: "))))
            while len(pending) >= self.max_batch_items or (pending and pending[0][1].done()):
                yield self._reply(*pending.pop(0), context)
        for request_id, fut in pending:
            yield self._reply(request_id, fut, context)
