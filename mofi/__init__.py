"""MOFI platform core: settings, the object store and Kafka adapters, the local stack, the CLI.

Service, training and pipeline code live in the top-level packages ``services``, ``training`` and
``pipelines``; they depend on this package, never the other way round. ``mofi.v1`` holds the
protobuf/gRPC code generated from ``protos/mofi/v1`` at build time.
"""

__version__ = "0.1.0"

#: The image the Dockerfile builds: skaffold's artifact and the chart's ``image.repository`` name it so, and the
#: pipeline's steps and torchx jobs default to it (``mofi pipeline compile --image registry/mofi:TAG`` pins one).
IMAGE = "mofi"
