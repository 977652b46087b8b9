"""Data: every common image format, clear errors, labelled folders, class lookup, samples, MNIST."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from patchlab.cli import main
from patchlab.data import (imagenet_classes, labelled_folder, load_digits, load_mnist, load_sample, load_samples,
                           read_image, read_image_rgba, save_image)
from patchlab.errors import PatchlabError, parse_fraction


@pytest.fixture
def rgb_array():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp"),
                                        ("TIFF", ".tif")])
def test_reads_common_formats(tmp_path, rgb_array, fmt, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(rgb_array).save(path, fmt)
    img = read_image(path)
    assert img.shape == (3, 40, 60) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless
        assert torch.equal((img * 255).round().byte().permute(1, 2, 0), torch.from_numpy(rgb_array))


def test_grayscale_rgba_16bit(tmp_path):
    Image.fromarray(np.full((10, 12), 128, np.uint8)).save(tmp_path / "g.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 10, 12) and torch.allclose(g, torch.full_like(g, 128 / 255))

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = read_image(tmp_path / "a.png")
    assert torch.allclose(rgb[:, 0, 0], torch.tensor([1.0, 0, 0])) and torch.allclose(rgb[:, 7, 0], torch.ones(3))
    four = read_image_rgba(tmp_path / "a.png")
    assert four.shape == (4, 8, 8) and four[3, 0, 0] == 1 and four[3, 7, 0] == 0

    Image.fromarray(np.full((6, 6), 65535, np.uint16)).save(tmp_path / "d.png")
    assert torch.allclose(read_image(tmp_path / "d.png"), torch.ones(3, 6, 6))
    Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(tmp_path / "h.png")
    assert abs(read_image(tmp_path / "h.png").mean().item() - 0.5) < 0.01


def test_exif_rotation(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (3, 40, 20)
    assert out[:, :20].mean() > 0.9 and out[:, 20:].mean() < 0.1  # white half now on top


def _png_with_header_size(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_decompression_bomb_guard(tmp_path, capsys):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(60000, 60000))
    with pytest.raises(PatchlabError, match="bomb.png.*(MP limit|decompression-bomb)"):
        read_image(path)
    assert main(["classify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bomb.png" in err and err.count("\n") == 1


@pytest.mark.parametrize("content,msg", [(b"", "empty file"), (b"hello, not an image\n", "not an image"),
                                         ("truncated", "corrupt or truncated")])
def test_bad_files_give_one_line_naming_the_file(tmp_path, rgb_array, content, msg, capsys):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        buf = io.BytesIO()
        Image.fromarray(rgb_array).save(buf, "JPEG")
        content = buf.getvalue()[:200]
    path.write_bytes(content)
    with pytest.raises(PatchlabError, match=msg):
        read_image(path)
    assert main(["classify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("patchlab: error: ") and str(path) in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_folder_errors(tmp_path, capsys):
    assert main(["classify", str(tmp_path / "nope.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["accuracy", str(tmp_path / "nodir")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "cat.jpg").write_bytes(b"x")
    assert main(["accuracy", str(tmp_path)]) == 2
    assert "cannot tell the label" in capsys.readouterr().err


def test_save_image_png_lossless_with_dpi(tmp_path):
    img = torch.rand(3, 17, 23)
    path = save_image(img, tmp_path / "x.png", dpi=300)
    assert torch.allclose(read_image(path), (img * 255).round() / 255, atol=1e-6)
    assert round(Image.open(path).info["dpi"][0]) == 300


def test_class_lookup():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes.lookup("toaster") == 859 == classes.lookup("Toaster") == classes.lookup("859") == classes.lookup(859)
    assert classes.lookup("n04442312") == 859
    assert classes.lookup("great_white_shark") == 2
    with pytest.raises(PatchlabError, match="did you mean 'toaster'"):
        classes.lookup("toastr")
    with pytest.raises(PatchlabError, match="out of range"):
        classes.lookup(1000)
    with pytest.raises(PatchlabError, match="unknown class name 'zzzzqqq'$"):
        classes.lookup("zzzzqqq")


@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), ("0.0157", 0.0157), (0.5, 0.5), ("0", 0.0)])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "nan", "abc", "1/0"])
def test_parse_fraction_rejects(bad):
    with pytest.raises(PatchlabError, match="eps must"):
        parse_fraction(bad)


def test_labelled_imagenet_folder(imagenet_dir):
    items = labelled_folder(imagenet_dir)
    assert len(items) == 700
    classes = imagenet_classes()
    for it in items[::50]:
        assert it.path.name.startswith(classes.wnids[it.label])


def test_labelled_subfolders(tmp_path, rgb_array):
    for name in ("toaster", "Tabby"):
        (tmp_path / name).mkdir()
        Image.fromarray(rgb_array).save(tmp_path / name / "a.png")
    items = labelled_folder(tmp_path)
    assert sorted(it.label for it in items) == [281, 859]
    custom = labelled_folder(tmp_path, class_names=["tabby", "toaster"])
    assert sorted(it.label for it in custom) == [0, 1]


def test_builtin_samples_classify(lite0):
    from patchlab.models import preprocess

    samples = load_samples()
    assert {s.name for s in samples} == {"chelsea", "coffee", "rocket", "astronaut"}
    x = torch.stack([preprocess(s.image, lite0) for s in samples])
    top5 = lite0.predict(x).topk(5).indices
    hits = sum(int(s.label in t.tolist()) for s, t in zip(samples, top5))
    assert hits >= 3
    with pytest.raises(PatchlabError, match="unknown sample"):
        load_sample("panda")


def test_mnist_idx_gz_and_plain(mnist_dir, tmp_path):
    d = load_mnist(mnist_dir)
    assert d.images.shape == (10000, 1, 28, 28) and d.labels.shape == (10000,)
    assert 0 <= d.images.min() and d.images.max() == 1
    assert d.labels.bincount().min() > 800
    for f in mnist_dir.iterdir():
        (tmp_path / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    plain = load_mnist(tmp_path)
    assert torch.equal(plain.images, d.images) and torch.equal(plain.labels, d.labels)


def test_digits_fallback_and_bad_folder(tmp_path):
    d = load_digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.source == "sklearn-digits"
    with pytest.raises(PatchlabError, match="no MNIST test files"):
        load_digits(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"garbage!")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(PatchlabError, match="not an IDX file"):
        load_mnist(tmp_path)
