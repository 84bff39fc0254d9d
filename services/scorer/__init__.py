"""The CLIP scorer: image-text cosine over gRPC, and the Kafka stage that keeps only shown entities."""
