"""Generated protobuf and gRPC modules for the mofi.v1 API (``make protos``; not committed)."""
