import pytest

from mofi_platform.databuild.fixtures import fixture_sources
from mofi_platform.databuild.gcompris_boards import parse_readme
from mofi_platform.databuild.rcc import RccError, iter_rcc


def test_reads_the_resource_tree():
    blob = (fixture_sources("gcompris") / "usr/share/gcompris-qt/rcc/fixture.rcc").read_bytes()
    entries = {e.path: e.data for e in iter_rcc(blob)}
    assert "gcompris/src/activities/explore_monuments/resource/README" in entries
    assert entries["gcompris/src/activities/explore_monuments/resource/france/montStMichel.webp"][:4] == b"RIFF"


@pytest.mark.parametrize("blob", [b"", b"PK\x03\x04 zip file", b"qres" + b"\x00\x00\x00\x09" + b"\x00" * 12])
def test_not_a_resource_file(blob):
    with pytest.raises(RccError):
        list(iter_rcc(blob))


def test_readme_blocks_map_files_to_credits():
    text = (
        "Copyright: A. Author\nLicense: CC0-1.0\nSource: https://commons.wikimedia.org/wiki/File:X_y.jpg\n"
        "Files:\nfrance/x.webp\nfrance/z.webp\n\nCopyright: B\nLicense: Public Domain\nFiles:\nq.svg\n"
    )
    credits = parse_readme(text)
    assert set(credits) == {"france/x.webp", "france/z.webp", "q.svg"}
    assert credits["france/z.webp"].licence == "CC0-1.0" and credits["france/z.webp"].source.endswith("X_y.jpg")
    assert credits["q.svg"].source == "" and credits["q.svg"].author == "B"
