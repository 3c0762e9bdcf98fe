"""A corpus of bad and unusual inputs, generated here: the CLI either converts what detectron2's read_image can
convert (and says so), or exits 2 with ONE line naming the file and the problem. Never a traceback."""
from __future__ import annotations

import pytest
from PIL import Image

from d2debug.cli import main

from corpus import broken_corpus, convertible_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name, data in broken_corpus().items():
        (d / name).write_bytes(data)
    for name, (data, _) in convertible_corpus().items():
        (d / name).write_bytes(data)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "one_pixel.png")
    return d


def _run(capsys, *args):
    code = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", sorted(broken_corpus()))
def test_broken_images_fail_with_one_line(corpus, capsys, name):
    code, _, err = _run(capsys, "--image", corpus / name)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and name in lines[0]


def test_bomb_is_refused_by_pillows_limit(corpus, capsys):
    _, _, err = _run(capsys, "--image", corpus / "bomb.png")
    assert "decompression-bomb" in err


@pytest.mark.parametrize("name", sorted(convertible_corpus()))
def test_convertible_images_are_converted_and_reported(corpus, capsys, name):
    word = convertible_corpus()[name][1]
    code, out, err = _run(capsys, "--image", corpus / name, "--set", "channel_order=swapped")
    assert code == 0, err
    assert word.lower() in out.lower(), out


def test_one_pixel_image_runs(corpus, capsys):
    code, out, err = _run(capsys, "--image", corpus / "one_pixel.png", "--json")
    assert code == 0, err


def test_directory_and_missing_paths(corpus, capsys, tmp_path):
    code, _, err = _run(capsys, "--image", corpus)
    assert code == 2 and "not a file" in err and str(corpus) in err
    code, _, err = _run(capsys, "--config", tmp_path / "nope.yaml", "--weights", tmp_path / "w.pth")
    assert code == 2 and "nope.yaml: config not found" in err


@pytest.mark.parametrize("yaml_text,needle", [
    ("MODEL: [\n", "YAML syntax error"),
    ("MODEL:\n  NOT_A_KEY: 1\n", "unknown config key"),
    ("INPUT:\n  MIN_SIZE_TEST: large\n", "invalid config value"),
    ("MODEL:\n  META_ARCHITECTURE: NoSuchRCNN\n", "No object named 'NoSuchRCNN' found in 'META_ARCH' registry!; register it by importing your code with --import"),
])
def test_bad_configs_on_the_cli(tmp_path, capsys, tiny_weights, yaml_text, needle):
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml_text)
    code, _, err = _run(capsys, "--config", cfg, "--weights", tiny_weights)
    assert code == 2 and needle in err and "deploy.yaml" in err and len(err.strip().splitlines()) == 1
