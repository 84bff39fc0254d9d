"""gRPC ``mofi.v1.ClipScorer``: cosine similarities between one image and several texts.

Requests from concurrent callers are merged into one forward pass by a dynamic batcher; a request
waits at most ``max_wait_ms`` for company. Bad input is the caller's error (INVALID_ARGUMENT with
the reason), and a caller's deadline bounds how long it waits for its batch. A call without a
deadline waits until its batch is scored.
"""

from __future__ import annotations

from concurrent.futures import Future, TimeoutError as FutureTimeout

import grpc

from mofi.v1 import scorer_pb2, scorer_pb2_grpc
from mofi_platform.services.common.deadline import deadline_passed, wait_timeout
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import ImageDecoder, RequestBudget
from mofi_platform.services.common.texts import validate_text
from mofi_platform.services.scorer.scoring import ClipScorer

__all__ = ["ClipScorerService", "SERVICE_NAME"]

SERVICE_NAME = scorer_pb2.DESCRIPTOR.services_by_name["ClipScorer"].full_name


class ClipScorerService(scorer_pb2_grpc.ClipScorerServicer):
    """``batcher.submit((image, texts))`` returns a Future of the cosines (see ``DynamicBatcher``)."""

    def __init__(
        self,
        scorer: ClipScorer,
        batcher,
        decoder: ImageDecoder,
        max_text_chars: int,
        max_texts: int = 256,
        max_batch_items: int = 256,
    ):
        self.scorer = scorer
        self.batcher = batcher
        self.decoder = decoder
        self.max_text_chars = max_text_chars
        self.max_texts = max_texts
        self.max_batch_items = max_batch_items

    def _invalid(self, context: grpc.ServicerContext, reason: str) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)

    def _prepare(
        self, req: scorer_pb2.ScoreRequest, context: grpc.ServicerContext, budget: RequestBudget, where: str = ""
    ) -> tuple:
        if not req.texts:
            self._invalid(context, f"{where}no texts to score")
        if len(req.texts) > self.max_texts:
            self._invalid(context, f"{where}{len(req.texts)} texts; at most {self.max_texts} per image")
        for i, text in enumerate(req.texts):
            try:
                validate_text(text, self.max_text_chars)
            except InvalidInput as e:
                self._invalid(context, f"{where}text {i}: {e}")
        try:
            image = self.decoder.decode(req.image, self.scorer.image_size, budget)
        except InvalidInput as e:
            self._invalid(context, f"{where}{e}")
        return image, list(req.texts)

    def _response(self, fut: Future, context: grpc.ServicerContext) -> scorer_pb2.ScoreResponse:
        try:
            scores = fut.result(timeout=wait_timeout(context))
        except FutureTimeout:
            deadline_passed(fut, context)
        except Exception as e:  # the model failed on the batch this request was in
            context.abort(grpc.StatusCode.INTERNAL, f"scoring failed: {type(e).__name__}: {e}")
        return scorer_pb2.ScoreResponse(scores=[float(s) for s in scores], model_version=self.scorer.version)

    def Score(self, request: scorer_pb2.ScoreRequest, context: grpc.ServicerContext) -> scorer_pb2.ScoreResponse:
        return self._response(self.batcher.submit(self._prepare(request, context, self.decoder.request())), context)

    def ScoreBatch(
        self, request: scorer_pb2.ScoreBatchRequest, context: grpc.ServicerContext
    ) -> scorer_pb2.ScoreBatchResponse:
        if len(request.items) > self.max_batch_items:
            self._invalid(context, f"{len(request.items)} items; at most {self.max_batch_items} per call")
        budget = self.decoder.request()  # the items' decodes share one request budget
        prepared = [self._prepare(item, context, budget, f"item {i}: ") for i, item in enumerate(request.items)]
        futures = [self.batcher.submit(p) for p in prepared]  # all valid: only then occupy the model
        return scorer_pb2.ScoreBatchResponse(items=[self._response(f, context) for f in futures])
