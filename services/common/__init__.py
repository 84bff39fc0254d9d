"""Scaffolding every service shares: gRPC server, dynamic batching, image decoding, Kafka stage."""
