"""The `mofi demo` command: pick a plan and a state folder, run the steps, stop the stack unless kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from mofi.settings import Settings
from mofi_platform.pipelines.demo.plans import PLANS
from mofi_platform.pipelines.demo.steps import Demo

__all__ = ["demo"]


@click.command("demo")
@click.option("--quick", is_flag=True, help="The committed fixture and a tiny model: the whole flow in minutes.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the run keeps its state, logs and report [default: <stack.data_dir>/../demo-<mode>].",
)
@click.option(
    "--fresh", is_flag=True, help="Redo the I2E dataset and everything after it (data and scorer stay cached)."
)
@click.option(
    "--scale",
    type=click.Choice(["subset", "full"]),
    default="subset",
    show_default=True,
    help="Corpus of the full run: a seeded subset sized for the 30-minute budget, or every pair (about an hour more).",
)
@click.option("--keep-stack", is_flag=True, help="Leave the local stack running afterwards (for mofi search etc.).")
@click.pass_obj
def demo(settings: Settings, quick: bool, state_dir: str | None, fresh: bool, scale: str, keep_stack: bool) -> None:
    """Run the main job end to end on this machine and write an HTML report (rerunning resumes)."""
    plan = PLANS["quick" if quick else "full"]
    if scale == "full":
        plan = dataclasses.replace(plan, data_pairs=0)
    root = Path(state_dir) if state_dir else Path(settings.stack.data_dir).parent / f"demo-{plan.name}"
    run = Demo(settings, plan, root)
    if fresh:
        run.runner.forget(keep=("data", "clip"))
    try:
        run.run(fresh=fresh)
    finally:
        if not keep_stack:
            from mofi.stack import Stack

            Stack(run.settings).down()
            click.echo(
                f"local stack stopped (its data stays in {run.settings.stack.data_dir}; `mofi stack up` brings it back)"
            )
