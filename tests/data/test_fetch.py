"""Fetch is idempotent, checks the pinned sha256, refuses reserved packages and says clearly what is
missing. No registry is contacted here."""

import dataclasses
import json
import tarfile

import pytest

from mofi_platform.databuild.fetch import LOCK_NAME, FetchError, fetch, sha256_file, unpacked_dir
from mofi_platform.databuild.fixtures import fixture_sources
from mofi_platform.databuild.sources import (
    PACKAGES,
    RESERVED,
    ReservedPackageError,
    SourcePackage,
    check_packages,
    package,
    reserved_pattern,
)


def pack_openmoji(cache):
    """A cached npm archive, as `npm pack openmoji@17.0.0` leaves it (here: the miniature package), and the
    pinned packages with its sha256 in place of the real archive's."""
    (cache / "npm").mkdir(parents=True)
    archive = cache / "npm" / "openmoji-17.0.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fixture_sources("openmoji"), arcname="package")
    mini = dataclasses.replace(package("openmoji"), sha256=sha256_file(archive))
    return tuple(mini if p.key == "openmoji" else p for p in PACKAGES)


def test_cached_archive_is_not_downloaded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))  # any client call would fail
    cache = tmp_path / "cache"
    pinned = pack_openmoji(cache)
    first = fetch(cache, ["openmoji"], packages=pinned)
    second = fetch(cache, ["openmoji"], packages=pinned)
    assert [f.downloaded for f in first + second] == [False, False]
    lock = json.loads((cache / LOCK_NAME).read_text())
    assert lock["openmoji"]["version"] == "17.0.0" and lock["openmoji"]["sha256"] == first[0].sha256
    assert lock["openmoji"]["licence"] == "CC-BY-SA-4.0"
    assert (unpacked_dir(cache, "openmoji") / "data" / "openmoji.json").exists()


def test_a_changed_archive_is_fetched_again_and_a_missing_client_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))
    cache = tmp_path / "cache"
    pinned = pack_openmoji(cache)
    fetch(cache, ["openmoji"], packages=pinned)
    (cache / "npm" / "openmoji-17.0.0.tgz").write_bytes(b"truncated download")
    with pytest.raises(FetchError, match=r"`npm` is not installed; it is needed to fetch openmoji@17.0.0"):
        fetch(cache, ["openmoji"], packages=pinned)
    with pytest.raises(FetchError, match=r"`apt-get` is not installed"):
        fetch(cache, ["wordnet"])


def test_unfetched_source_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="run `mofi data fetch` first"):
        unpacked_dir(tmp_path, "wordnet")


def test_an_archive_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    """A registry serving other bytes for a pinned version (here the miniature repack) is an error, and the
    archive is not kept."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))
    cache = tmp_path / "cache"
    pack_openmoji(cache)
    fake_npm = tmp_path / "bin" / "npm"  # a client that "downloads" the same wrong archive again
    fake_npm.parent.mkdir()
    fake_npm.write_text(f"#!/bin/sh\n/bin/cp {tmp_path / 'wrong.tgz'} openmoji-17.0.0.tgz\n")
    fake_npm.chmod(0o755)
    (tmp_path / "wrong.tgz").write_bytes((cache / "npm" / "openmoji-17.0.0.tgz").read_bytes())
    monkeypatch.setenv("PATH", str(fake_npm.parent))
    with pytest.raises(FetchError, match=r"openmoji@17.0.0 downloaded with sha256 .* is pinned"):
        fetch(cache, ["openmoji"])
    assert not (cache / "npm" / "openmoji-17.0.0.tgz").exists()


RESERVED_NAMES = [
    ("npm", "@iconify-json/emojione"),
    ("npm", "@iconify-json/emojione-v1"),
    ("npm", "@iconify-json/emojione-monotone"),
    ("npm", "@iconify-json/streamline-emojis"),
    ("npm", "@iconify-json/fluent-emoji"),
    ("npm", "@iconify-json/fluent-emoji-high-contrast"),
    ("npm", "@iconify-json/flag"),
    ("npm", "@iconify-json/circle-flags"),
    ("npm", "@iconify-json/flagpack"),
    ("npm", "flag-icons"),
    ("npm", "svg-country-flags"),
    ("apt", "kgeography-data"),
    ("apt", "papirus-icon-theme"),
    ("apt", "adwaita-icon-theme"),
    ("apt", "yaru-theme-icon"),
]


@pytest.mark.parametrize(("client", "name"), RESERVED_NAMES)
def test_reserved_packages_are_refused_before_anything_is_downloaded(tmp_path, monkeypatch, client, name):
    monkeypatch.setenv("PATH", str(tmp_path / "no-clients"))
    held_out = SourcePackage("held-out", client, name, "1.0", "CC-BY-4.0", "corpus", sha256="0" * 64)
    with pytest.raises(ReservedPackageError, match="reserved for evaluation"):
        check_packages([*PACKAGES, held_out])
    with pytest.raises(FetchError, match=rf"{client} package '{name}' \(source 'held-out'\) is reserved"):
        fetch(tmp_path / "cache", packages=[held_out])
    assert not (tmp_path / "cache" / client).exists()


def test_no_pinned_package_is_reserved_and_near_names_are_not():
    assert len(RESERVED_NAMES) >= len(RESERVED)
    assert all(reserved_pattern(p.client, p.name) is None for p in PACKAGES)
    check_packages(PACKAGES)  # what sources.py runs when PACKAGES is defined
    # the benchmark's set and the corpus sets are not reserved; names only match as a whole
    assert reserved_pattern("npm", "@iconify-json/fluent-emoji-flat") is None
    assert reserved_pattern("npm", "@iconify-json/flag-icons-extra") is None
    assert reserved_pattern("apt", "flag-icons") is None  # another registry
    assert reserved_pattern("apt", "hicolor-icon-theme") == "*-icon-theme"


def test_pins_need_a_sha256_and_unique_keys():
    with pytest.raises(ValueError, match="no pinned sha256"):
        check_packages([dataclasses.replace(package("mdi"), sha256="")])
    with pytest.raises(ValueError, match="pinned twice"):
        check_packages([package("mdi"), package("mdi")])
