"""The data layer: source packages -> raw image-text corpus, entity knowledge base, retrieval benchmark.

Modules: ``sources`` (pinned packages), ``fetch`` (download cache), ``extractors`` (one per corpus
source), ``images`` (robust decoding), ``corpus`` (WebDataset shards), ``kb_sources`` (KB extractors),
``benchmark`` (GPR1200 layout), ``build`` (the build), ``report`` (build report), ``produce``
(corpus -> Kafka), ``fixtures`` (the committed test fixture), ``cli`` (`mofi data`, `mofi produce`).
"""

__all__: list[str] = []
