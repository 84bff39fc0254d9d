"""`mofi <command>` as the demo's subprocesses, configured by the run's settings, their output in log files.

Why subprocesses: every step is the command a user would run (`mofi data build`, `mofi stage ner`,
`mofi serve embedder`, ...), so the demo exercises the real entry points and each heavy model lives
in its own process. The environment is taken from the settings at each call: steps change them as
the run goes (the calibrated scorer threshold, the embedder's port).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from mofi.settings import Settings

__all__ = ["DemoError", "Commands"]

_PROGRESS = re.compile(r"\d+/\d+ \[[\d:]+<")  # a tqdm bar: "12/218 [00:40<07:10"


class DemoError(click.ClickException):
    """A demo step failed; the message names the step, the command and where its log is."""


class Commands:
    """Runs ``python -m mofi.cli <args>`` with ``settings`` as environment; logs go to ``logs``."""

    def __init__(self, settings: Settings, logs: Path, echo: Callable[[str], None] = click.echo):
        self.settings = settings
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    @staticmethod
    def _cmd(args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "mofi.cli", *args]

    def run(self, *args: str, log: str | None = None) -> str:
        """Run ``mofi <args>``; stdout is returned (and shown), stderr goes to the terminal or ``log``."""
        self.echo(f"    $ mofi {' '.join(args)}")
        with open(self.logs / log, "w") if log else open(os.devnull, "w") as sink:
            proc = subprocess.run(
                self._cmd(args), env=self.env, stdout=subprocess.PIPE, stderr=sink if log else None, text=True
            )
        if proc.stdout.strip():
            self.echo("\n".join("      " + line for line in proc.stdout.strip().splitlines()[-3:]))
        if proc.returncode != 0:
            where = f"; log {self.logs / log}" if log else ""
            raise DemoError(f"`mofi {' '.join(args)}` failed with exit code {proc.returncode}{where}")
        return proc.stdout

    def run_filtered(self, *args: str, log: str, show: re.Pattern[str], every_s: float = 5.0) -> None:
        """Run ``mofi <args>`` with all output in ``log``; echo only lines matching ``show``.

        Progress-bar lines (carriage returns count as line ends) are echoed at most every ``every_s``.
        """
        self.echo(f"    $ mofi {' '.join(args)}  (full log: {self.logs / log})")
        last = 0.0
        with open(self.logs / log, "w") as sink:
            proc = subprocess.Popen(
                self._cmd(args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
                line = line.strip()
                if not show.search(line):
                    continue
                progress = bool(_PROGRESS.search(line))
                if progress and time.monotonic() - last < every_s:
                    continue
                last = time.monotonic() if progress else last
                self.echo("      " + line[:160])
        if proc.wait() != 0:
            raise DemoError(f"`mofi {' '.join(args)}` failed with exit code {proc.returncode}; log {self.logs / log}")

    def start(self, *args: str, log: str) -> subprocess.Popen:
        """Start ``mofi <args>`` in the background (a stage, a server), stdout and stderr to ``log``."""
        with open(self.logs / log, "w") as out:  # the child keeps its own copy of the file
            return subprocess.Popen(self._cmd(args), env=self.env, stdout=out, stderr=subprocess.STDOUT)
