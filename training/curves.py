"""Training-curve plot (PNG) from runs' ``metrics.jsonl``: one line per run, one panel per loss.

A panel may carry its loss's chance level as a dashed line (the class loss's, from
``losses.cosface_chance_loss``), so the plot shows whether the loss left it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_training_curves", "PANELS"]

PANELS = ("loss", "class_loss", "contrastive_loss")


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training_curves(
    runs: dict[str, list[dict[str, Any]]],
    path: str | Path,
    chance: Mapping[str, float] | None = None,
    smooth: int = 10,
) -> Path:
    """Write the figure to ``path``; panels whose loss is zero for every run are left out.

    ``chance`` maps a panel to its chance level, drawn as a dashed line.
    """
    panels = [p for p in PANELS if any(m.get(p, 0.0) for ms in runs.values() for m in ms)] or ["loss"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, metrics in sorted(runs.items()):
            if any(m.get(panel, 0.0) for m in metrics):
                ax.plot([m["step"] for m in metrics], _smooth([m[panel] for m in metrics], smooth), label=name)
        if chance and panel in chance:
            ax.axhline(chance[panel], color="0.3", linestyle="--", linewidth=1, label=f"chance {chance[panel]:.2f}")
        ax.set_title(panel.replace("_", " "))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
