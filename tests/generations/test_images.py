"""generations/images.py: what gets in, what comes out, and what never gets decoded."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import warnings
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.datastructures import MultiValueDict
from PIL import Image, ImageFile, PngImagePlugin

from generations import images, jobs
from generations.forms import StudioForm
from generations.images import ImageRejected, clean_image, make_thumbnail
from generations.models import ModelSpec
from tests.factories import job_request, make_route, png_bytes

RED, BLUE = (220, 20, 20), (20, 20, 220)
ORIENTATION, MAKE, GPS_IFD, X_RESOLUTION = 0x0112, 0x010F, 0x8825, 0x011A


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def solid(size=(37, 23), color=RED, mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noisy(size=(96, 64), seed=1) -> Image.Image:
    """Incompressible pixels, so cutting a file short really cuts image data."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def smooth(size=(80, 60)) -> Image.Image:
    """Gradients: what lossy codecs keep well, so pixels can be compared after them."""
    ramp = Image.linear_gradient("L")
    channels = [ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 90)]
    return Image.merge("RGB", channels)


def red_left_blue_right(size=(20, 10)) -> Image.Image:
    im = solid(size, BLUE)
    im.paste(RED, (0, 0, size[0] // 2, size[1]))
    return im


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[str, bytes]]:
    """(type, payload) of each chunk up to IEND."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8].decode("ascii")
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == "IEND":
            break
    return chunks


def png_chunk_types(data: bytes) -> list[str]:
    return [kind for kind, _ in png_chunks(data)]


def png_declaring(width: int, height: int, idat: bytes | None = b"\x00garbage") -> bytes:
    """A valid PNG signature and header claiming ``width``×``height`` RGB pixels, with
    pixel data that is garbage (or absent): only the header can be read."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    body = png_chunk(b"IDAT", idat) if idat is not None else b""
    return b"\x89PNG\r\n\x1a\n" + header + body + png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16×16 JPEG whose frame header (SOF0) is rewritten to claim another size."""
    data = bytearray(encode(noisy((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_text(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


def exif_with(orientation: int | None = None, *, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "Canon"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        gps_ifd = exif.get_ifd(GPS_IFD)
        gps_ifd[1], gps_ifd[2] = "N", (52.0, 22.0, 37.5)  # latitude ref, latitude
        gps_ifd[3], gps_ifd[4] = "E", (4.0, 53.0, 12.0)  # longitude ref, longitude
    return exif


def raw_exif(*entries: tuple[int, int, int, bytes]) -> bytes:
    """An EXIF block built by hand: (tag, TIFF type, count, value) entries, little endian."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    pa, pb = a.convert("RGB").tobytes(), b.convert("RGB").tobytes()
    assert len(pa) == len(pb)
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def rejection(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        clean_image(data, **kwargs)
    assert str(info.value) == info.value.message
    return info.value.message


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every time Pillow starts decoding pixel data, the format is recorded here."""
    calls: list[str] = []
    load = ImageFile.ImageFile.load

    def spy(im):
        calls.append(im.format)
        return load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


# --- accepted, and re-encoded --------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "extension", "tolerance"),
    [("PNG", "image/png", "png", 0), ("JPEG", "image/jpeg", "jpg", 6),
     ("WEBP", "image/webp", "webp", 6)],
)  # fmt: skip
def test_it_accepts_png_jpeg_and_webp_and_keeps_their_format(fmt, mime, extension, tolerance):
    original = smooth((80, 60))
    clean = clean_image(encode(original, fmt), name=f"ref.{extension}")
    out = opened(clean.data)
    assert (out.format, clean.mime_type, clean.extension) == (fmt, mime, extension)
    assert (clean.width, clean.height) == out.size == (80, 60)
    assert mean_difference(out, original) <= tolerance


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_it_re_encodes_so_bytes_hidden_after_the_image_are_gone(fmt):
    trailer = b"<html><script>alert(document.cookie)</script></html>"
    polyglot = encode(solid(), fmt) + trailer
    clean = clean_image(polyglot)
    assert trailer not in clean.data
    assert opened(clean.data).size == (37, 23)


def test_it_decodes_a_valid_image_fully(decodes):
    clean_image(encode(noisy(), "PNG"))
    assert decodes and set(decodes) == {"PNG"}  # the spy the bomb tests rely on works


@pytest.mark.parametrize(
    ("im", "fmt", "mode"),
    [
        (solid(mode="L", color=128), "PNG", "RGB"),
        (solid(mode="LA", color=(128, 40)), "PNG", "RGBA"),
        (solid(mode="I;16", color=40000), "PNG", "RGB"),
        (solid(mode="1", color=1), "PNG", "RGB"),
        (solid(mode="L", color=128), "JPEG", "RGB"),
        (solid(mode="CMYK", color=(0, 200, 200, 0)), "JPEG", "RGB"),
    ],
    ids=["grey-png", "grey-alpha-png", "16-bit-png", "1-bit-png", "grey-jpeg", "cmyk-jpeg"],
)
def test_it_accepts_the_pixel_formats_cameras_and_editors_write(im, fmt, mode):
    out = opened(clean_image(encode(im, fmt)).data)
    assert (out.format, out.mode, out.size) == (fmt, mode, (37, 23))


def test_it_keeps_transparency_of_a_png():
    im = solid(mode="RGBA", color=(*RED, 255))
    im.paste((0, 0, 0, 0), (0, 0, 10, 10))
    out = opened(clean_image(encode(im, "PNG")).data)
    assert out.mode == "RGBA"
    assert out.getpixel((2, 2))[3] == 0 and out.getpixel((30, 20)) == (*RED, 255)


def test_it_keeps_transparency_of_a_palette_png():
    im = solid(mode="P", color=1)
    im.putpalette([0, 0, 0, *RED] + [0] * 762)
    im.paste(0, (0, 0, 10, 10))
    out = opened(clean_image(encode(im, "PNG", transparency=0)).data)
    assert out.mode == "RGBA"
    assert out.getpixel((2, 2))[3] == 0 and out.getpixel((30, 20)) == (*RED, 255)


def test_it_keeps_transparency_of_a_webp_losslessly():
    im = noisy((32, 32)).convert("RGBA")
    im.putalpha(Image.linear_gradient("L").resize((32, 32)))
    out = opened(clean_image(encode(im, "WEBP", lossless=True)).data)
    assert out.mode == "RGBA"
    assert out.tobytes() == im.tobytes()


def test_it_accepts_a_phone_photo_with_extra_frames_as_a_jpeg():
    # Pillow reads JPEGs carrying a second image (depth map, HDR gain map) as "MPO".
    photo, depth = solid((40, 20), RED), solid((40, 20), BLUE)
    data = encode(photo, "MPO", save_all=True, append_images=[depth])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    clean = clean_image(data, name="IMG_0042.jpg")
    out = opened(clean.data)
    assert (clean.mime_type, out.format, out.size) == ("image/jpeg", "JPEG", (40, 20))
    assert getattr(out, "n_frames", 1) == 1
    assert mean_difference(out, photo) < 6  # the photo, not the depth map


def test_it_reports_the_sha256_and_size_of_what_it_stores():
    data = encode(noisy((37, 23)), "PNG", pnginfo=png_text("Comment", "hello"))
    clean = clean_image(data)
    assert clean.sha256 == hashlib.sha256(clean.data).hexdigest()
    assert clean.sha256 != hashlib.sha256(data).hexdigest()  # it hashes the cleaned bytes
    assert (clean.width, clean.height) == opened(clean.data).size == (37, 23)
    assert clean.data != data


def test_it_gives_the_same_sha256_to_the_same_pixels_whatever_the_metadata():
    pixels = noisy((30, 20))
    plain = clean_image(encode(pixels, "PNG"))
    tagged = clean_image(encode(pixels, "PNG", pnginfo=png_text("Author", "someone")))
    other = clean_image(encode(noisy((30, 20), seed=2), "PNG"))
    assert plain.sha256 == tagged.sha256
    assert other.sha256 != plain.sha256


# --- refused, with a message a person understands -----------------------------------


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("anim.gif", encode(solid(), "GIF"),
         "anim.gif is a GIF; only PNG, JPEG and WebP images are accepted."),
        ("scan.tiff", encode(solid(), "TIFF"),
         "scan.tiff is a TIFF; only PNG, JPEG and WebP images are accepted."),
        ("old.bmp", encode(solid(), "BMP"),
         "old.bmp is a BMP; only PNG, JPEG and WebP images are accepted."),
        ("logo.svg",
         b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
         b'<rect width="10" height="10"/></svg>',
         "logo.svg is not a PNG, JPEG or WebP image."),
        ("page.png", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
         "page.png is not a PNG, JPEG or WebP image."),
        ("noise.jpg", random.Random(0).randbytes(4096),
         "noise.jpg is not a PNG, JPEG or WebP image."),
        ("empty.png", b"", "empty.png is empty."),
    ],
    ids=["gif", "tiff", "bmp", "svg", "html", "random-bytes", "empty"],
)  # fmt: skip
def test_it_refuses_what_is_not_a_png_jpeg_or_webp(name, data, message):
    assert rejection(data, name=name) == message


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "cut.png"), ("JPEG", "cut.jpg")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_it_refuses_a_truncated_image(fmt, name, keep):
    data = encode(noisy(), fmt)
    cut = data[: int(len(data) * keep)]
    Image.open(io.BytesIO(cut))  # the header alone still looks fine
    assert rejection(cut, name=name) == f"{name} is damaged or incomplete and could not be read."


def test_it_refuses_a_jpeg_missing_only_its_last_bytes():
    data = encode(noisy(), "JPEG")
    assert rejection(data[:-2], name="a.jpg") == (
        "a.jpg is damaged or incomplete and could not be read."
    )


def test_it_refuses_a_png_whose_pixel_data_is_garbage():
    assert "damaged or incomplete" in rejection(png_declaring(64, 64), name="x.png")


# --- decompression bombs: refused from the header, never decoded -----------------------


def test_it_refuses_a_bomb_by_its_header_before_decoding_anything(settings, decodes):
    bomb = png_declaring(8000, 8000)  # 64 megapixels claimed in 60 bytes
    assert len(bomb) < 100 and settings.NANOWEB_MAX_IMAGE_PIXELS < 8000 * 8000
    message = rejection(bomb, name="bomb.png")
    # Garbage pixel data would have said "damaged": only the header was read.
    assert message == "bomb.png is 8000×8000 pixels; the limit is 50 megapixels."
    assert decodes == []


def test_it_refuses_a_bomb_without_any_pixel_data(decodes):
    message = rejection(png_declaring(9000, 9000, idat=None), name="bomb.png")
    assert message == "bomb.png is 9000×9000 pixels; the limit is 50 megapixels."
    assert decodes == []


def test_it_refuses_a_jpeg_bomb_before_decoding(decodes):
    bomb = jpeg_declaring(9000, 8000)
    assert Image.open(io.BytesIO(bomb)).size == (9000, 8000)
    assert rejection(bomb, name="b.jpg") == "b.jpg is 9000×8000 pixels; the limit is 50 megapixels."
    assert decodes == []


@pytest.mark.parametrize("side", [10_000, 65_535])
def test_it_names_the_pixel_limit_for_bombs_pillow_itself_stops(side, decodes):
    # Past Pillow's own limit Image.open raises (or warns, which nanoweb makes an error)
    # before our check runs; the person must still hear it is too big, not "not a PNG".
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        message = rejection(png_declaring(side, side), name="huge.png")
    assert "huge.png" in message and "the limit is 50 megapixels" in message
    assert "not a PNG" not in message
    assert decodes == []


def test_it_takes_the_pixel_limit_from_settings(settings):
    settings.NANOWEB_MAX_IMAGE_PIXELS = 64 * 48
    assert clean_image(png_bytes(64, 48)).width == 64  # exactly at the limit
    settings.NANOWEB_MAX_IMAGE_PIXELS = 64 * 48 - 1
    assert rejection(png_bytes(64, 48), name="r.png") == (
        "r.png is 64×48 pixels; the limit is 3,071 pixels."
    )


def test_it_states_a_fractional_pixel_limit_as_it_is(settings):
    settings.NANOWEB_MAX_IMAGE_PIXELS = 1_500_000
    assert rejection(png_bytes(1500, 1001), name="r.png") == (
        "r.png is 1500×1001 pixels; the limit is 1.5 megapixels."
    )


# --- the byte cap ------------------------------------------------------------------


def test_it_refuses_a_file_over_the_byte_cap_without_opening_it(settings, monkeypatch):
    data = encode(noisy(), "PNG")
    settings.NANOWEB_MAX_UPLOAD_BYTES = 2048
    opened_files = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened_files.append(a))
    size_kb = f"{len(data) / 1024:.1f}"
    assert rejection(data, name="big.png") == f"big.png is {size_kb} KB; the limit is 2 KB."
    assert opened_files == []


def test_it_accepts_a_file_exactly_at_the_byte_cap(settings):
    data = encode(noisy(), "PNG")
    settings.NANOWEB_MAX_UPLOAD_BYTES = len(data)
    assert clean_image(data).width == 96
    settings.NANOWEB_MAX_UPLOAD_BYTES = len(data) - 1
    assert "the limit is" in rejection(data)


def test_it_lets_a_caller_pass_its_own_byte_cap():
    data = encode(noisy(), "PNG")
    assert "the limit is 1 KB" in rejection(data, max_bytes=1024)


def test_it_uses_the_configured_byte_cap_by_default(settings):
    cap = settings.NANOWEB_MAX_UPLOAD_BYTES
    assert cap == 20 * 1024 * 1024  # the documented default
    image = png_bytes()
    # Bytes after the PNG's end are ignored by decoders and dropped by the re-encode.
    assert clean_image(image + b"\x00" * (cap - len(image))).width == 64
    assert rejection(image + b"\x00" * (cap + 1 - len(image)), name="big.png") == (
        "big.png is 20.0 MB; the limit is 20 MB."
    )


# --- metadata is dropped -------------------------------------------------------------


def test_it_strips_exif_and_gps_from_a_jpeg():
    data = encode(
        solid(),
        "JPEG",
        exif=exif_with(gps=True),
        comment=b"<b>shot at home</b>",
        xmp=b"<x:xmpmeta>secret location</x:xmpmeta>",
    )
    before = opened(data)
    assert before.getexif()[MAKE] == "Canon" and before.getexif().get_ifd(GPS_IFD)

    clean = clean_image(data)
    after = opened(clean.data)
    assert dict(after.getexif()) == {}
    assert after.getexif().get_ifd(GPS_IFD) == {}
    assert not {"exif", "xmp", "comment"} & set(after.info)
    for leak in (b"Exif", b"Canon", b"secret location", b"shot at home"):
        assert leak not in clean.data


def test_it_strips_exif_xmp_and_icc_from_a_webp():
    data = encode(
        solid(),
        "WEBP",
        exif=exif_with(gps=True),
        icc_profile=b"fake-icc" * 20,
        xmp=b"<x:xmpmeta>secret location</x:xmpmeta>",
    )
    clean = clean_image(data)
    assert dict(opened(clean.data).getexif()) == {}
    for leak in (b"EXIF", b"Canon", b"XMP ", b"secret location", b"ICCP", b"fake-icc"):
        assert leak not in clean.data


def test_it_keeps_only_pixel_chunks_of_a_png():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert('tEXt')</script>")
    info.add_text("Description", "<img src=x onerror=alert('zTXt')>", zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<html><script>alert('iTXt')</script></html>")
    data = encode(
        solid(),
        "PNG",
        pnginfo=info,
        exif=exif_with(gps=True),
        icc_profile=b"<script>alert('iCCP')</script>",
        dpi=(300, 300),
    )
    assert {"tEXt", "zTXt", "iTXt", "eXIf", "iCCP", "pHYs"} <= set(png_chunk_types(data))

    clean = clean_image(data)
    assert set(png_chunk_types(clean.data)) == {"IHDR", "IDAT", "IEND"}
    assert b"script" not in clean.data and b"alert" not in clean.data


def test_it_keeps_a_models_png_pixels_byte_for_byte_instead_of_compressing_again():
    """Re-compressing a noisy 1K PNG costs ~0.4 s per generated image; copying its
    pixel chunks costs nothing and loses nothing."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "<script>alert(1)</script>")
    data = encode(noisy(), "PNG", pnginfo=info, compress_level=1) + b"<html>after IEND</html>"

    clean = clean_image(data)
    idat = [c for c in png_chunks(data) if c[0] == "IDAT"]
    assert [c for c in png_chunks(clean.data) if c[0] == "IDAT"] == idat
    assert set(png_chunk_types(clean.data)) == {"IHDR", "IDAT", "IEND"}
    assert b"script" not in clean.data and b"after IEND" not in clean.data


# --- EXIF orientation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "first", "last", "along"),
    [
        (6, (10, 20), RED, BLUE, "vertical"),  # rotate 90° clockwise: left edge on top
        (8, (10, 20), BLUE, RED, "vertical"),  # rotate 90° anticlockwise: left edge at bottom
        (3, (20, 10), BLUE, RED, "horizontal"),  # upside down
        (1, (20, 10), RED, BLUE, "horizontal"),  # already upright
    ],
)
def test_it_turns_a_photo_upright_from_its_exif_orientation(orientation, size, first, last, along):
    data = encode(red_left_blue_right((20, 10)), "JPEG", exif=exif_with(orientation))
    clean = clean_image(data)
    out = opened(clean.data)
    assert (clean.width, clean.height) == out.size == size
    w, h = size
    start, end = (
        ((w // 2, 1), (w // 2, h - 2)) if along == "vertical" else ((1, h // 2), (w - 2, h // 2))
    )
    assert (
        mean_difference(out.crop((*start, start[0] + 1, start[1] + 1)), solid((1, 1), first)) < 30
    )
    assert mean_difference(out.crop((*end, end[0] + 1, end[1] + 1)), solid((1, 1), last)) < 30
    assert ORIENTATION not in out.getexif()  # a viewer must not rotate it a second time


def test_it_turns_a_png_upright_from_its_exif_orientation():
    data = encode(red_left_blue_right((20, 10)), "PNG", exif=exif_with(6))
    out = opened(clean_image(data).data)
    assert out.size == (10, 20)
    assert out.getpixel((5, 0)) == RED and out.getpixel((5, 19)) == BLUE


def test_it_accepts_a_photo_whose_exif_block_is_malformed():
    # XResolution stored as text: readers cope, re-serialising the EXIF block does not.
    exif = raw_exif((ORIENTATION, 3, 1, struct.pack("<H", 6)), (X_RESOLUTION, 2, 4, b"abc\x00"))
    data = encode(red_left_blue_right((20, 10)), "JPEG", exif=exif)
    clean = clean_image(data, name="camera.jpg")
    assert (clean.width, clean.height) == (10, 20)
    assert b"abc" not in clean.data


# --- thumbnails ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"), [((1200, 600), (512, 256)), ((300, 900), (171, 512))]
)
def test_it_makes_a_webp_thumbnail_no_longer_than_the_setting(settings, size, expected):
    assert settings.NANOWEB_THUMBNAIL_SIZE == 512
    thumb = opened(make_thumbnail(clean_image(encode(solid(size), "PNG")).data))
    assert thumb.format == "WEBP"
    assert thumb.size == expected


def test_it_follows_a_changed_thumbnail_setting(settings):
    settings.NANOWEB_THUMBNAIL_SIZE = 100
    thumb = opened(make_thumbnail(encode(solid((400, 240)), "JPEG")))
    assert thumb.size == (100, 60)


def test_it_lets_a_caller_ask_for_another_thumbnail_size():
    assert opened(make_thumbnail(encode(solid((400, 250)), "PNG"), max_side=64)).size == (64, 40)


def test_it_never_upscales_a_small_image_into_a_thumbnail():
    thumb = opened(make_thumbnail(encode(solid((40, 30)), "PNG")))
    assert (thumb.format, thumb.size) == ("WEBP", (40, 30))


def test_it_keeps_transparency_in_a_thumbnail():
    im = solid((600, 600), mode="RGBA", color=(*RED, 255))
    im.paste((0, 0, 0, 0), (0, 0, 300, 600))
    thumb = opened(make_thumbnail(clean_image(encode(im, "PNG")).data))
    assert thumb.mode == "RGBA" and thumb.size == (512, 512)
    assert thumb.getpixel((10, 256))[3] == 0 and thumb.getpixel((500, 256))[3] == 255


# --- how many reference images (jobs.validate and the studio form) ---------------------


def refs_form(model_slug: str, count: int) -> StudioForm:
    files = [SimpleUploadedFile(f"ref-{i}.png", png_bytes(), "image/png") for i in range(count)]
    data = {
        "prompt": "a lighthouse at dusk",
        "model": model_slug,
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "count": 1,
    }
    return StudioForm(data, MultiValueDict({"references": files}))


def test_it_refuses_more_reference_images_than_the_model_takes(db):
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    with pytest.raises(jobs.SubmitError) as info:
        jobs.validate(job_request(pro, reference_bytes=[png_bytes()] * 15))
    assert info.value.field == "references"
    assert info.value.message == (
        "Nano Banana Pro accepts at most 14 reference images; you attached 15."
    )


def test_it_takes_as_many_reference_images_as_the_model_allows(db):
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    jobs.validate(job_request(pro, reference_bytes=[png_bytes()] * 14))  # does not raise


def test_it_holds_a_small_model_to_its_own_reference_limit(db):
    flash = ModelSpec.objects.get(slug="nano-banana")
    with pytest.raises(jobs.SubmitError) as info:
        jobs.validate(job_request(flash, image_size=None, reference_bytes=[png_bytes()] * 4))
    assert info.value.message == "Nano Banana accepts at most 3 reference images; you attached 4."


def test_the_studio_form_refuses_15_reference_images(db):
    make_route("nano-banana-pro")
    form = refs_form("nano-banana-pro", 15)
    assert not form.is_valid()
    assert form.errors == {
        "references": ["Nano Banana Pro accepts at most 14 reference images; you attached 15."]
    }


def test_the_studio_form_accepts_14_reference_images(db):
    make_route("nano-banana-pro")
    form = refs_form("nano-banana-pro", 14)
    assert form.is_valid(), form.errors
    assert len(form.job_request.references) == 14


def test_the_studio_form_refuses_a_pile_of_files_without_reading_them(db, monkeypatch):
    make_route("nano-banana-pro")
    read = []
    monkeypatch.setattr(images, "clean_image", lambda *a, **k: read.append(a))
    form = refs_form("nano-banana-pro", 40)
    assert not form.is_valid()
    assert form.errors["references"] == [
        "Nano Banana Pro accepts at most 14 reference images; you attached 40."
    ]
    assert read == []


def test_a_pile_of_files_for_an_unknown_model_is_refused_by_the_largest_limit(db):
    make_route("nano-banana-pro")
    form = refs_form("no-such-model", 40)
    assert not form.is_valid()
    assert form.errors["references"] == [
        "40 files attached; no model here accepts more than 14 reference images."
    ]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_it_makes_the_thumbnail_from_the_same_decode_when_asked(fmt):
    data = encode(solid((1024, 768)), fmt)
    clean = clean_image(data, thumbnail=True)
    assert opened(clean.thumbnail).format == "WEBP"
    assert opened(clean.thumbnail).size == (512, 384)
    assert clean_image(data).thumbnail is None


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_it_keeps_a_models_jpeg_as_sent_minus_its_metadata(progressive):
    """Re-encoding a JPEG loses quality every time; its segments are copied instead."""
    original = encode(
        smooth((320, 240)),
        "JPEG",
        quality=90,
        progressive=progressive,
        exif=exif_with(gps=True),
        icc_profile=b"<script>icc</script>" * 8,
        comment=b"<script>comment</script>",
    )
    data = original + b"<html>after the end</html>"

    clean = clean_image(data)
    assert clean.mime_type == "image/jpeg"
    for leak in (b"Canon", b"script", b"after the end", b"Exif", b"ICC_PROFILE"):
        assert leak not in clean.data
    with Image.open(io.BytesIO(original)) as sent, Image.open(io.BytesIO(clean.data)) as kept:
        assert sent.tobytes() == kept.tobytes()  # the same pixels: nothing was re-encoded
    assert len(clean.data) < len(original)
