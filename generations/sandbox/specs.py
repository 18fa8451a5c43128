"""How each upstream model behaves, as the sandbox imitates it.

The sandbox is a test double of Google's and OpenAI's APIs, so it keeps its own
tables rather than reading nanoweb's catalog or prices: if nanoweb's idea of a
model drifts from the upstream's, tests against the sandbox should notice.
"""

from __future__ import annotations

from dataclasses import dataclass

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

# Output pixels at 1K, as Gemini 2.5 Flash Image documents them; 2K doubles both
# sides and 4K quadruples them.
#
# Known gap: Gemini 3 Pro Image and 3.1 Flash Image document a slightly different
# 1K table (2:3 848x1264, 3:2 1264x848, 3:4 896x1200, 4:3 1200x896, 4:5 928x1152,
# 5:4 1152x928, 9:16 768x1376, 16:9 1376x768, 21:9 1584x672). The sandbox uses
# one table for every model for now because the rest of nanoweb was built and
# tested against it; switching is a matter of giving those models their own table.
SIZES_1K = {
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
SCALE = {"1K": 1, "2K": 2, "4K": 4}


@dataclass(frozen=True)
class UpstreamModel:
    """One model's observable behaviour: image format, sizes and usage it reports."""

    name: str
    mime_type: str
    # Image-output tokens per imageSize. A model with only "1K" here does not
    # accept imageSize at all (the API answers 400 if it is sent).
    image_tokens: dict[str, int]
    thinks: bool  # reports thoughtsTokenCount and signs its parts

    @property
    def accepts_image_size(self) -> bool:
        return len(self.image_tokens) > 1

    @property
    def image_format(self) -> str:
        return "JPEG" if self.mime_type == "image/jpeg" else "PNG"


FLASH_25 = UpstreamModel("gemini-2.5-flash-image", "image/png", {"1K": 1290}, thinks=False)
MODELS = {
    m.name: m
    for m in (
        FLASH_25,
        UpstreamModel(
            "gemini-3-pro-image-preview",
            "image/jpeg",
            {"1K": 1120, "2K": 1120, "4K": 2000},
            thinks=True,
        ),
        UpstreamModel(
            "gemini-3.1-flash-image-preview",
            "image/jpeg",
            {"1K": 1120, "2K": 1680, "4K": 2520},
            thinks=True,
        ),
    )
}


def upstream_model(name: str) -> UpstreamModel:
    """The behaviour of ``name``; models the sandbox does not know act like 2.5 Flash Image."""
    return MODELS.get(name, FLASH_25)


# --- OpenAI Images models -------------------------------------------------------

# gpt-image-1's image-output tokens by quality and size, as OpenAI documents them.
GPT_IMAGE_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


@dataclass(frozen=True)
class ImagesModel:
    """One OpenAI Images model: what it accepts and what its answers carry."""

    name: str
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    max_n: int
    max_edit_images: int  # 0: the model does not edit
    reports_usage: bool  # gpt-image models report tokens; dall-e models bill per image
    revises_prompt: bool  # dall-e-3 rewrites the prompt and says how


GPT_IMAGE_1 = ImagesModel(
    "gpt-image-1",
    sizes=("1024x1024", "1536x1024", "1024x1536", "auto"),
    qualities=("low", "medium", "high", "auto"),
    max_n=10,
    max_edit_images=16,
    reports_usage=True,
    revises_prompt=False,
)
DALL_E_3 = ImagesModel(
    "dall-e-3",
    sizes=("1024x1024", "1792x1024", "1024x1792"),
    qualities=("standard", "hd"),
    max_n=1,
    max_edit_images=0,
    reports_usage=False,
    revises_prompt=True,
)
DALL_E_2 = ImagesModel(
    "dall-e-2",
    sizes=("256x256", "512x512", "1024x1024"),
    qualities=("standard",),
    max_n=10,
    max_edit_images=1,
    reports_usage=False,
    revises_prompt=False,
)


def images_model(name: str) -> ImagesModel:
    """The behaviour of ``name``; names the sandbox does not know act like gpt-image-1."""
    for model in (DALL_E_3, DALL_E_2):
        if name.startswith(model.name):
            return model
    return GPT_IMAGE_1
