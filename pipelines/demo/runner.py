"""Named steps with a resumable state file: what a rerun may skip, how long each step took, where a run stands.

Why apart from the steps: the demo's steps (:mod:`.steps`) say what to run; this says how a run is
kept. Each finished step records its result in ``<state_dir>/state.json``; a rerun reuses a recorded
result whose outputs still exist instead of redoing the step, so an interrupted run resumes where it
stopped and a finished one only redoes what records nothing. ``forget`` drops results (``--fresh``)
and counts generations, so rebuilt outputs get new names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

__all__ = ["StepRunner"]


class StepRunner:
    """The state of a run in ``state_dir``: results by step name, the generation, the latest timings."""

    def __init__(self, state_dir: Path, echo: Callable[[str], None] = click.echo):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = state_dir / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.echo = echo
        self.timings: dict[str, float] = {}

    def _save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=2, default=str) + "\n")

    @property
    def generation(self) -> int:
        """How many times the run was started afresh (see :meth:`forget`)."""
        return int(self.state.get("generation", 0))

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        """Number and announce the step, time it, and record its time once it finished."""
        n = len(self.timings) + 1
        self.echo(click.style(f"\n[{n}] {title}", bold=True))
        t0 = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - t0, 1)
        self.state.setdefault("timings", {})[name] = self.timings[name]  # of the latest run (0 when reused)
        self._save()
        self.echo(f"    done in {self.timings[name]:.0f} s")

    def done(self, name: str, still_valid: Callable[[dict], bool] = lambda _: True) -> dict | None:
        """The recorded result of ``name`` if it finished before and its outputs still exist."""
        result = self.state.get(name)
        if result is not None and still_valid(result):
            self.echo(f"    reusing the result of an earlier run ({self.state_file})")
            return result
        return None

    def cached(self, name: str, still_valid: Callable[[dict], bool], build: Callable[[], dict]) -> dict:
        """The result of ``name``: the recorded one while ``still_valid`` says its outputs exist, else ``build()``'s."""
        found = self.done(name, still_valid)
        return found if found is not None else self.record(name, build())

    def record(self, name: str, result: dict) -> dict:
        self.state[name] = result
        self._save()
        return result

    def forget(self, keep: tuple[str, ...]) -> None:
        """Drop the recorded results of every step but ``keep`` (their outputs are then rebuilt).

        The generation counter goes up, so the rebuilt snapshot and training run get new names:
        snapshots are immutable and a training run of an existing name would resume, not retrain.
        """
        generation = self.generation + 1
        self.state = {k: v for k, v in self.state.items() if k in keep}
        self.state["generation"] = generation
        self._save()
