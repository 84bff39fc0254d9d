"""The end-to-end demo's HTML report: one self-contained ``index.html`` that shows what every stage made.

Sections: the run summary; I2E statistics read from the object store (shards, images, entities,
sources, entities per image, top entities, CLIP score distribution, pairs dropped for having no
entity); examples of kept and dropped entities with their images; training curves and evaluation
results; the recipe ablation table (``results.json`` of ``benchmarks/train_ablation.py``, the rows of
RESULTS.md); retrieval contact sheets for searches.

Why a package: :mod:`.collect` gathers everything into plain values, :mod:`.ablation` holds the
ablation table's columns (shared with the benchmark that writes RESULTS.md), and :mod:`.render` fills
``templates/`` with them and inlines ``static/report.css``.
"""

from mofi_platform.pipelines.report.collect import (
    THUMB_PX,
    EntityExample,
    I2EStats,
    SearchExample,
    SearchHit,
    collect_i2e,
    thumbnail_data_uri,
)
from mofi_platform.pipelines.report.render import build_report

__all__ = [
    "SearchHit",
    "SearchExample",
    "EntityExample",
    "I2EStats",
    "THUMB_PX",
    "build_report",
    "collect_i2e",
    "thumbnail_data_uri",
]
