"""`mofi serve/stage/up`: the registry resolves the NER entry points; unknown names are usage errors."""

from __future__ import annotations

from click.testing import CliRunner

from mofi.cli import main
from mofi_platform.services.cli import SERVERS, STAGES, resolve


def test_registry_and_usage_errors():
    assert resolve(SERVERS["ner"]).__name__ == "serve_main"
    assert resolve(STAGES["ner"]).__name__ == "stage_main"
    assert set(STAGES) == {"ner", "scorer", "writer", "indexer"} and set(SERVERS) == {"ner", "scorer", "embedder"}
    runner = CliRunner()
    for args in (["serve", "nope"], ["stage", "nope"], ["up", "--only", "nope"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
    assert "SIGTERM" in runner.invoke(main, ["serve", "--help"]).output
