"""Embedding and image-search service: gRPC ``mofi.v1.Embedder`` and ``mofi.v1.Search``, Milvus
indexing (``mofi index``), the indexer Kafka stage and ``mofi search``."""
