"""Output sizes and the rendered pictures themselves (no server needed)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generations.sandbox.render import dimensions, render_image
from tests.generations.sandbox.client import FLASH, FLASH_31, PRO

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


@pytest.mark.parametrize(("ratio", "size"), FLASH_1K.items())
def test_it_knows_the_1k_size_of_every_aspect_ratio(ratio, size):
    assert dimensions(FLASH, ratio) == size
    assert dimensions(PRO, ratio, "1K") == size


@pytest.mark.parametrize(("image_size", "factor"), [("1K", 1), ("2K", 2), ("4K", 4)])
def test_it_scales_both_sides_for_2k_and_4k(image_size, factor):
    assert dimensions(FLASH_31, "16:9", image_size) == (1344 * factor, 768 * factor)


def test_it_refuses_sizes_a_model_does_not_make():
    with pytest.raises(ValueError, match="does not make '2K'"):
        dimensions(FLASH, "1:1", "2K")
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
