"""generations/images.py on JPEGs as models send them: kept as sent minus metadata, never
re-encoded, and decoded at a reduced scale for the checks and the thumbnail."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageFile

from generations import images
from generations.images import clean_image
from tests.factories import GEMINI_FIXTURES

GEMINI_3 = GEMINI_FIXTURES / "gemini-3-pro-image-preview.text-and-image.json"


def gemini_3_jpeg() -> bytes:
    """The image of a real Gemini 3 Pro answer, as it came over the wire."""
    body = json.loads(GEMINI_3.read_text())["interactions"][0]["response"]["body"]
    parts = body["candidates"][0]["content"]["parts"]
    inline = next(p["inlineData"] for p in parts if "inlineData" in p)
    assert inline["mimeType"] == "image/jpeg"
    return base64.b64decode(inline["data"])


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each header segment before the first scan."""
    found, pos = [], 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        found.append((data[pos + 1], pos, end))
        pos = end
    return found


def encode(im: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **params)
    return buf.getvalue()


def gradient(size=(640, 480)) -> Image.Image:
    ramp = Image.linear_gradient("L")
    channels = [ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 90)]
    return Image.merge("RGB", channels)


@pytest.fixture
def full_decodes(monkeypatch) -> list[tuple[int, int]]:
    """The size each JPEG decode produced (a reduced decode is smaller than the file)."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def spy(im):
        decoding = im.format == "JPEG" and bool(im.tile)  # later calls decode nothing
        result = load(im)
        if decoding:
            sizes.append(im.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


def test_it_stores_a_gemini_3_jpeg_as_sent_minus_its_metadata_segments():
    sent = gemini_3_jpeg()
    metadata = [(m, a, b) for m, a, b in segments(sent) if m not in images.JPEG_IMAGE_MARKERS]
    assert [m for m, _a, _b in metadata] == [0xEB]  # its C2PA content credentials (APP11)
    expected = sent
    for _m, start, end in reversed(metadata):
        expected = expected[:start] + expected[end:]

    clean = clean_image(sent, thumbnail=True)

    assert clean.data == expected
    assert (clean.mime_type, clean.width, clean.height) == ("image/jpeg", 1408, 768)
    with Image.open(io.BytesIO(clean.thumbnail)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (512, 279))


def test_it_keeps_a_jpeg_ending_with_its_end_marker_byte_for_byte():
    """The end-of-image marker is a file's last two bytes: it must still be found."""
    sent = encode(gradient(), quality=90)
    assert sent.endswith(b"\xff\xd9")
    assert clean_image(sent).data == sent


def test_it_decodes_a_kept_jpeg_only_at_the_scale_its_thumbnail_needs(full_decodes):
    sent = encode(gradient((2048, 1536)), quality=90)
    clean = clean_image(sent, thumbnail=True)
    assert clean.data == sent
    assert full_decodes == [(512, 384)]  # a quarter of each side, not 2048×1536
    assert (clean.width, clean.height) == (2048, 1536)  # the stored image's own size


def test_it_decodes_a_kept_jpeg_at_an_eighth_when_no_thumbnail_is_asked(full_decodes):
    clean_image(encode(gradient((2048, 1536)), quality=90))
    assert full_decodes == [(256, 192)]


def test_it_still_refuses_a_kept_jpeg_whose_scan_is_cut_short():
    sent = encode(Image.effect_noise((1024, 1024), 60).convert("RGB"), quality=90)
    with pytest.raises(images.ImageRejected, match="damaged or incomplete"):
        clean_image(sent[: len(sent) // 2], thumbnail=True)


def test_it_decodes_a_sideways_jpeg_fully_to_turn_it_upright(full_decodes):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    clean = clean_image(encode(gradient((64, 32)), exif=exif))
    assert full_decodes == [(64, 32)]
    assert (clean.width, clean.height) == (32, 64)
