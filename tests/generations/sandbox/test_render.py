"""Output sizes and the rendered pictures themselves (no server needed)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generations.sandbox.render import dimensions, render_image
from tests.generations.sandbox.client import FLASH, FLASH_31, LITE, NB21, PRO

FLASH_1K = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}

GEMINI_3_1K = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}
EXTREME_1K = {"1:4": (512, 2064), "4:1": (2064, 512), "1:8": (352, 2928), "8:1": (2928, 352)}


@pytest.mark.parametrize(("ratio", "size"), FLASH_1K.items())
def test_it_knows_the_1k_size_of_every_aspect_ratio_of_2_5_flash(ratio, size):
    assert dimensions(FLASH, ratio) == size


@pytest.mark.parametrize(("ratio", "size"), GEMINI_3_1K.items())
def test_the_gemini_3_models_have_a_1k_table_of_their_own(ratio, size):
    for model in (PRO, FLASH_31, NB21, LITE):
        assert dimensions(model, ratio, "1K") == size


@pytest.mark.parametrize(("ratio", "size"), EXTREME_1K.items())
def test_the_3_1_models_make_the_four_new_ratios(ratio, size):
    for model in (FLASH_31, NB21, LITE):
        assert dimensions(model, ratio) == size
    with pytest.raises(ValueError, match="Unsupported aspect ratio"):
        dimensions(PRO, ratio)
    with pytest.raises(ValueError, match="Unsupported aspect ratio"):
        dimensions(FLASH, ratio)


@pytest.mark.parametrize(
    ("image_size", "size"),
    [("512", (688, 384)), ("1K", (1376, 768)), ("2K", (2752, 1536)), ("4K", (5504, 3072))],
)
def test_it_halves_512_and_doubles_2k_and_quadruples_4k(image_size, size):
    assert dimensions(FLASH_31, "16:9", image_size) == size


def test_it_halves_every_ratio_exactly_at_512():
    for ratio, (w, h) in {**GEMINI_3_1K, **EXTREME_1K}.items():
        assert dimensions(FLASH_31, ratio, "512") == (w // 2, h // 2)
        assert w % 2 == h % 2 == 0


def test_it_refuses_sizes_a_model_does_not_make():
    with pytest.raises(ValueError, match="does not make '2K'"):
        dimensions(FLASH, "1:1", "2K")
    with pytest.raises(ValueError, match="does not make '512'"):
        dimensions(NB21, "1:1", "512")
    with pytest.raises(ValueError, match="does not make '4K'"):
        dimensions(LITE, "1:1", "4K")
    with pytest.raises(ValueError, match="Unsupported aspect ratio"):
        dimensions(PRO, "7:3", "1K")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_it_renders_a_decodable_image_of_the_exact_size(fmt):
    data = render_image("a lighthouse at dusk", 832, 1248, fmt)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert (image.format, image.size, image.mode) == (fmt, (832, 1248), "RGB")


def test_it_colours_each_prompt_differently():
    def corner(prompt: str):
        with Image.open(io.BytesIO(render_image(prompt, 256, 256, "PNG"))) as image:
            return image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))

    assert corner("a red fox") != corner("a blue whale")


def test_it_writes_the_prompt_and_a_sandbox_label_on_the_picture():
    def plain(prompt: str) -> Image.Image:
        return Image.open(io.BytesIO(render_image(prompt, 512, 512, "PNG"))).convert("L")

    picture = plain("a lighthouse")
    middle = picture.crop((0, 200, 512, 312)).histogram()
    assert sum(middle[241:]) > 500  # white letters across the middle
    corner = picture.crop((380, 470, 512, 512)).histogram()
    assert sum(corner[:40]) > 500  # the dark SANDBOX pill


def _glyph(font, char: str) -> bytes:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (64, 64))
    ImageDraw.Draw(canvas).text((32, 32), char, font=font, fill=255, anchor="mm")
    return canvas.tobytes()


def test_chinese_prompts_are_drawn_with_a_font_that_has_the_glyphs():
    """Issue 20: Pillow's own font draws every Chinese character as the same box."""
    import os

    from PIL import ImageFont

    from generations.sandbox import render

    if render.cjk_font_path() is None:
        if os.environ.get("NANOWEB_CI"):
            pytest.fail("CI installs fonts-wqy-microhei for the sandbox's Chinese prompts")
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")
    plain = ImageFont.load_default(size=40)
    assert _glyph(plain, "中") == _glyph(plain, "国")  # the box the studio used to show
    font = render.prompt_font("一只读报的狐狸", 40)
    assert font.path == render.cjk_font_path()
    assert _glyph(font, "中") != _glyph(font, "国") and any(_glyph(font, "中"))
    assert render.prompt_font("a red fox", 40).path != render.cjk_font_path()
    assert render.render_image("一只在雨中读报的狐狸，水彩", 512, 512, "PNG")[:4] == b"\x89PNG"
