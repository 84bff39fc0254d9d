"""Fetch is idempotent and says clearly what is missing. No registry is contacted here."""

import json
import tarfile

import pytest

from mofi_platform.databuild.fetch import LOCK_NAME, FetchError, fetch, unpacked_dir
from mofi_platform.databuild.fixtures import fixture_sources


def pack_openmoji(cache):
    """A cached npm archive, as `npm pack openmoji@17.0.0` leaves it (here: the miniature package)."""
    (cache / "npm").mkdir(parents=True)
    with tarfile.open(cache / "npm" / "openmoji-17.0.0.tgz", "w:gz") as tar:
        tar.add(fixture_sources("openmoji"), arcname="package")


def test_cached_archive_is_not_downloaded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))  # any client call would fail
    cache = tmp_path / "cache"
    pack_openmoji(cache)
    first = fetch(cache, ["openmoji"])
    second = fetch(cache, ["openmoji"])
    assert [f.downloaded for f in first + second] == [False, False]
    lock = json.loads((cache / LOCK_NAME).read_text())
    assert lock["openmoji"]["version"] == "17.0.0" and lock["openmoji"]["sha256"] == first[0].sha256
    assert lock["openmoji"]["licence"] == "CC-BY-SA-4.0"
    assert (unpacked_dir(cache, "openmoji") / "data" / "openmoji.json").exists()


def test_a_changed_archive_is_fetched_again_and_a_missing_client_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))
    cache = tmp_path / "cache"
    pack_openmoji(cache)
    fetch(cache, ["openmoji"])
    (cache / "npm" / "openmoji-17.0.0.tgz").write_bytes(b"truncated download")
    with pytest.raises(FetchError, match=r"`npm` is not installed; it is needed to fetch openmoji@17.0.0"):
        fetch(cache, ["openmoji"])
    with pytest.raises(FetchError, match=r"`apt-get` is not installed"):
        fetch(cache, ["wordnet"])


def test_unfetched_source_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="run `mofi data fetch` first"):
        unpacked_dir(tmp_path, "wordnet")
