"""Pictures for the sandbox: a prompt-coloured gradient with the prompt written on it.

Everything is done by Pillow's C code (gradients drawn small and scaled up,
noise tiled), so even a 4K image renders in a fraction of a second.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
import os
import textwrap
import unicodedata

from PIL import Image, ImageChops, ImageDraw, ImageFont

from generations.sandbox.specs import SCALE, upstream_model

# Gradients are smooth, so they are drawn at this size and scaled up.
_SKETCH_SIDE = 256
_GRAIN_TILE = 256
# Real model output is noisy, which is why a 1K PNG from Gemini weighs ~2 MB.
# Grain gives the sandbox's images a realistic weight; it is left out of PNGs
# larger than 1K, which no real model sends and which would weigh ~25 MB.
_PNG_GRAIN_MAX_PIXELS = 1600 * 1600
_MAX_PROMPT_CHARS = 400
_MAX_LINES = 7
# Pillow's own font has no Chinese, Japanese or Korean glyphs: prompts with them are
# drawn with the first of these that is installed (Debian's fonts-wqy-microhei,
# fonts-noto-cjk), or with the file NANOWEB_SANDBOX_FONT names. Nothing is downloaded.
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


def dimensions(model: str, aspect_ratio: str = "1:1", image_size: str = "1K") -> tuple[int, int]:
    """Pixel size of ``model``'s output; ValueError for a ratio or size it does not make.

    Each model has its own 1K table (Gemini 3 models differ from 2.5); 2K doubles both
    sides, 4K quadruples them and "512" halves them."""
    spec = upstream_model(model)
    if not spec.makes_images:
        raise ValueError(f"{model} does not make images")
    if aspect_ratio not in spec.aspect_ratios:
        raise ValueError(
            f"Unsupported aspect ratio {aspect_ratio!r}; use one of {spec.aspect_ratios}"
        )
    if image_size not in spec.image_tokens:
        raise ValueError(f"{model} does not make {image_size!r} images")
    w, h = spec.sizes_1k[aspect_ratio]
    num, den = SCALE[image_size]
    return w * num // den, h * num // den


@functools.lru_cache(maxsize=8)
def render_image(prompt: str, width: int, height: int, fmt: str = "PNG") -> bytes:
    """Encoded image bytes (``fmt`` "PNG", "JPEG" or "WEBP") showing ``prompt``.

    The picture depends only on the arguments, so the last few are kept: a load test
    repeating one prompt measures nanoweb, not the stand-in drawing the same image."""
    fmt = fmt.upper()
    digest = hashlib.sha256(prompt.encode()).digest()
    image = _background(digest, width, height)
    if fmt != "PNG" or width * height <= _PNG_GRAIN_MAX_PIXELS:
        image = ImageChops.soft_light(image, _grain(width, height))
    draw = ImageDraw.Draw(image)
    _draw_prompt(draw, prompt, width, height, _shade(digest))
    _draw_label(draw, f"SANDBOX · {width}x{height}", width, height)
    buf = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        image.save(buf, fmt, quality=90)
    else:
        image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _palette(digest: bytes) -> list[tuple[int, int, int]]:
    hue = digest[0] / 255
    second = (hue + 0.12 + digest[1] / 255 * 0.3) % 1
    glow = (hue + 0.45 + digest[6] / 255 * 0.2) % 1
    return [_rgb(hue, 0.7, 0.45), _rgb(second, 0.65, 0.85), _rgb(glow, 0.45, 1.0)]


def _shade(digest: bytes) -> tuple[int, int, int]:
    return _rgb(digest[0] / 255, 0.8, 0.18)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _background(digest: bytes, width: int, height: int) -> Image.Image:
    deep, light, glow = _palette(digest)
    scale = _SKETCH_SIDE / max(width, height)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    ramp = _linear_ramp(digest[2] / 255 * 360).resize(size, Image.Resampling.BICUBIC)
    sketch = Image.composite(Image.new("RGB", size, light), Image.new("RGB", size, deep), ramp)
    sketch = Image.composite(Image.new("RGB", size, glow), sketch, _glow_mask(digest, size))
    return sketch.resize((width, height), Image.Resampling.BICUBIC)


def _linear_ramp(angle: float) -> Image.Image:
    """A 0→255 ramp running at ``angle`` degrees (the largest square a rotation keeps)."""
    turned = Image.linear_gradient("L").rotate(angle, Image.Resampling.BICUBIC, expand=True)
    rad = math.radians(angle)
    side = int(256 / (abs(math.cos(rad)) + abs(math.sin(rad))))
    left, top = (turned.width - side) // 2, (turned.height - side) // 2
    return turned.crop((left, top, left + side, top + side))


def _glow_mask(digest: bytes, size: tuple[int, int]) -> Image.Image:
    width, height = size
    diameter = int(max(size) * (0.7 + digest[3] / 255 * 0.7))
    # radial_gradient reaches 178 at the edge midpoints: fade out within that circle.
    spot = Image.radial_gradient("L").point(lambda v: int(170 * max(0.0, 1 - v / 178) ** 1.5))
    spot = spot.resize((diameter, diameter), Image.Resampling.BICUBIC)
    mask = Image.new("L", size, 0)
    centre = (int(digest[4] / 255 * width), int(digest[5] / 255 * height))
    mask.paste(spot, (centre[0] - diameter // 2, centre[1] - diameter // 2))
    return mask


@functools.cache
def _grain_tile() -> Image.Image:
    return Image.effect_noise((_GRAIN_TILE, _GRAIN_TILE), 10).convert("RGB")


def _grain(width: int, height: int) -> Image.Image:
    tile = _grain_tile()
    grain = Image.new("RGB", (width, height))
    for x in range(0, width, _GRAIN_TILE):
        for y in range(0, height, _GRAIN_TILE):
            grain.paste(tile, (x, y))
    return grain


@functools.cache
def cjk_font_path() -> str | None:
    """The font file for prompts Pillow's own font cannot draw; None: none installed."""
    for path in (os.environ.get("NANOWEB_SANDBOX_FONT", ""), *CJK_FONTS):
        if os.path.isfile(path):
            return path
    return None


@functools.lru_cache(maxsize=32)
def _cjk_font(size: int) -> ImageFont.FreeTypeFont:
    # Loaded once per size: the file is several megabytes, and a prompt tries a few sizes.
    return ImageFont.truetype(cjk_font_path(), size)


def _wide(text: str) -> bool:
    return any(unicodedata.east_asian_width(c) in "WF" for c in text)


def prompt_font(text: str, size: int) -> ImageFont.FreeTypeFont:
    """Pillow's font for Latin prompts; an installed CJK font for prompts with wide
    (Chinese, Japanese, Korean) characters, which Pillow's would draw as boxes."""
    if _wide(text) and cjk_font_path():
        return _cjk_font(size)
    return ImageFont.load_default(size=size)


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int, shade) -> None:
    text = " ".join(prompt.split())[:_MAX_PROMPT_CHARS] or "(no prompt)"
    short_side = min(width, height)
    size = short_side // 13
    while True:
        font = prompt_font(text, size)
        lines = _wrap(text, font, width * 0.84)
        if len(lines) <= _MAX_LINES or size <= short_side // 30:
            break
        size = int(size * 0.85)
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES]
        lines[-1] = lines[-1].rstrip(" .,;") + "…"
    leading = int(size * 1.25)
    top = (height - leading * len(lines)) // 2
    stroke = max(1, size // 14)
    for i, line in enumerate(lines):
        draw.text(
            (width / 2, top + i * leading + leading / 2),
            line,
            font=font,
            fill=(255, 255, 255),
            anchor="mm",
            stroke_width=stroke,
            stroke_fill=shade,
        )


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    # textwrap by characters, sized from the font's average letter width, is
    # good enough for a label and far cheaper than measuring every word.
    per_char = font.getlength("abcdefghijklmnopqrstuvwxyz ") / 27
    if _wide(text):  # a Chinese character is about as wide as two Latin letters
        per_char = font.getlength("中文") / 2
    return textwrap.wrap(text, width=max(8, int(max_width / per_char)))


def _draw_label(draw: ImageDraw.ImageDraw, label: str, width: int, height: int) -> None:
    size = max(10, min(width, height) // 42)
    font = ImageFont.load_default(size=size)
    pad = size // 2
    margin = size
    text_w = font.getlength(label)
    box = (width - margin - text_w - 2 * pad, height - margin - size - 2 * pad)
    draw.rounded_rectangle(
        (box[0], box[1], width - margin, height - margin), radius=pad, fill=(20, 20, 24)
    )
    draw.text(
        (box[0] + pad, box[1] + pad + size / 2),
        label,
        font=font,
        fill=(255, 255, 255),
        anchor="lm",
    )
