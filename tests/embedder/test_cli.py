"""`mofi index --images` then `mofi search` with a contact sheet, through the real command line."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from mofi.cli import main
from tests.embedder.conftest import COLOURS, png


def test_index_folder_then_search_with_contact_sheet(tmp_path, checkpoints):
    images = tmp_path / "images"
    images.mkdir()
    for colour in COLOURS:
        (images / f"{colour}_disc.png").write_bytes(png(colour))
    (images / "broken_file.png").write_bytes(b"not an image")
    env = {
        "MOFI_MILVUS_URI": str(tmp_path / "m.db"),
        "MOFI_MILVUS_COLLECTION": "cli_images",
        "MOFI_EMBEDDER_CHECKPOINT": checkpoints["a"],
        "HF_HUB_OFFLINE": "1",
    }
    runner = CliRunner()
    done = runner.invoke(main, ["index", "--images", str(images), "--batch-size", "4"], env=env)
    assert done.exit_code == 0, done.output
    assert "indexed 6 images into cli_images_v" in done.output and "skipped 1" in done.output

    sheet = tmp_path / "sheet.png"
    found = runner.invoke(
        main, ["search", "--image", str(images / "blue_disc.png"), "-k", "3", "--contact-sheet", str(sheet)], env=env
    )
    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    assert lines[0].startswith("3 hits from cli_images_v") and "blue disc" in lines[1]
    with Image.open(sheet) as im:
        assert im.size[0] == 3 * 128 and im.size[1] > 128

    by_text = runner.invoke(main, ["search", "a red disc", "-k", "2"], env=env)
    assert by_text.exit_code == 0 and by_text.output.startswith("2 hits")
    missing = runner.invoke(main, ["search", "x", "--collection", "nope"], env=env)
    assert missing.exit_code != 0 and "no collection or alias named 'nope'" in missing.output
