"""How each upstream model behaves, as the sandbox imitates it.

The sandbox is a test double of Google's and OpenAI's APIs, so it keeps its own
tables rather than reading nanoweb's catalog or prices: if nanoweb's idea of a
model drifts from the upstream's, tests against the sandbox should notice.

Google's lineup as of December 2026, and where each fact comes from (looked up in
December 2026; "third-party" marks a figure Google's own pages, as found, do not give):

* ``gemini-nano-banana-2.1`` (Nano Banana 2.1): 14 aspect ratios, imageSize 1K/2K/4K,
  "512" refused with 400, thinking minimal/medium/high (default medium), Search
  grounding. Google's own page for it was not found; all of this is third-party: the
  tanstack/ai 0.36.0 release notes
  (https://github.com/tanstack/ai/releases/tag/%40tanstack%2Fai-gemini%400.36.0: "all 14
  aspect ratios at 1K, 2K, or 4K ... the API does not accept [512] on this model"),
  https://docs.laozhang.ai/en/api-capabilities/nano-banana-2-1-image ("returns HTTP 400
  for 512"; its Chinese version gives 16:9 as 1376x768 at 1K and 2752x1536 at 2K) and
  the model table of https://docs.laozhang.ai/ko/api-capabilities/nano-banana-image.md
  (thinking "minimal, medium (default), high"; Nano Banana 2 and 2 Lite "minimal or
  high", Pro "always on", 2 Lite without Search grounding). 1120 image tokens at 1K:
  $30/M image output, $0.0336 per 1K image
  (https://github.com/BerriAI/litellm/discussions/44983). Token limits: 3.1 Flash Image's.
* ``gemini-3-pro-image`` (Nano Banana Pro): GA 2026-05-28
  (https://ai.google.dev/gemini-api/docs/deprecations), the 10 classic ratios,
  1K/2K/4K at 1120/1120/2000 image tokens, always thinks, Search grounding (the
  laozhang table above; the token figures are those this module carried for the
  preview from Google's image-generation guide, not found again this time).
* ``gemini-3.1-flash-image`` (Nano Banana 2): GA 2026-05-28 (same page); 14 ratios;
  747/1120/1680/2520 tokens at 512/1K/2K/4K ("Image generation specifications",
  https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/gemini/3-1-flash-image-preview);
  131,072 input / 32,768 output tokens
  (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/gemini/3-1-flash-image).
  Thinking minimal/high (laozhang table above). Deprecated for 2.1; third-party pages
  (the LiteLLM announcement above) give it a shutdown on 2026-10-29, which Google's
  deprecations page, as found, does not show: the sandbox still serves it.
* ``gemini-3.1-flash-lite-image`` (Nano Banana 2 Lite): imageSize 1K only (2K and 4K
  not supported), thinking "minimal and high", Search grounding not supported,
  65,536 input / 4,096 output tokens
  (https://ai.google.dev/gemini-api/docs/models/gemini-3.1-flash-lite-image). That page
  says "a discrete set of 14 aspect ratios" but then lists only the 10 classic ones;
  the sandbox takes 14 (a third-party live probe got 512x2064 for 1:4 at 1K).
* ``gemini-2.5-flash-image`` (Nano Banana): 10 ratios, no imageSize, PNG, 1290 tokens,
  no thinking. Google's deprecations page gives it a shutdown date of 2026-10-02
  (earliest); the sandbox still serves it, as nanoweb's catalog does.
* Shut down on 2026-06-25: ``gemini-3-pro-image-preview`` (replaced by
  ``gemini-3-pro-image``) and ``gemini-3.1-flash-image-preview`` (replaced by
  ``gemini-3.1-flash-image``), https://ai.google.dev/gemini-api/docs/deprecations.
  They are not in ``MODELS``: the sandbox answers them, like any id it does not know,
  with Google's 404 NOT_FOUND.
* models.list / models.get (https://ai.google.dev/api/models): ``pageSize`` defaults to
  50 and is capped at 1000, ``pageToken`` continues a listing; each Model has ``name``
  ("models/<id>"), ``version``, ``displayName``, ``description``, ``inputTokenLimit``,
  ``outputTokenLimit``, ``supportedGenerationMethods`` and the sampling defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The ten ratios every image model takes, and the four Gemini 3.1 added.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTREME_ASPECT_RATIOS = ("1:4", "4:1", "1:8", "8:1")
ALL_ASPECT_RATIOS = ASPECT_RATIOS + EXTREME_ASPECT_RATIOS

# Output pixels at 1K, as Gemini 2.5 Flash Image documents them (image-generation guide).
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
# Output pixels at 1K for the Gemini 3 image models. Google's image-generation guide
# gives them a table of their own; the ten classic rows were recorded here from it
# earlier (as the "known gap" of the single table) and were not found again on Google's
# pages this time. The four new ratios are not in what was found of Google's pages:
# their sizes are what live calls returned, as published in third-party code (1:4
# 512x2064 ... 8:1 2928x352, 16:9 2752x1536 at 2K and 5504x3072 at 4K), and they follow
# the ~1 megapixel, multiple-of-16 rule of the rest of the table.
SIZES_1K_GEMINI_3 = {
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
    "1:4": (512, 2064),
    "4:1": (2064, 512),
    "1:8": (352, 2928),
    "8:1": (2928, 352),
}
# imageSize → (numerator, denominator) applied to both 1K sides: 2K doubles them, 4K
# quadruples them (16:9 at 4K is 5504x3072), "512" halves them. Halving is a sandbox
# simplification: one third-party probe got 256x1024 for 1:4 at 512, not 256x1032.
SCALE = {"512": (1, 2), "1K": (1, 1), "2K": (2, 1), "4K": (4, 1)}

# The levels generationConfig.thinkingConfig.thinkingLevel can name (the API's enum).
THINKING_LEVELS = ("minimal", "low", "medium", "high")

IMAGE_METHODS = ("generateContent", "countTokens", "batchGenerateContent")
TEXT_METHODS = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
EMBEDDING_METHODS = ("embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent")

# thoughtsTokenCount drawn per thinking level. Google publishes no figures; these are
# sandbox choices: minimal small, high large. Pro's "high" keeps to what a recorded Pro
# answer reported (174 thought tokens).
FLASH_THOUGHTS = {"minimal": (20, 90), "low": (60, 200), "medium": (120, 400), "high": (450, 1400)}
PRO_THOUGHTS = {"high": (100, 400)}


@dataclass(frozen=True)
class UpstreamModel:
    """One model's observable behaviour: what it accepts, and what its answers carry."""

    name: str
    display_name: str
    description: str
    version: str
    input_token_limit: int
    output_token_limit: int
    methods: tuple[str, ...] = IMAGE_METHODS
    mime_type: str | None = None  # None: the model answers with text only
    # Image-output tokens per imageSize; "1K" is what a request without imageSize makes.
    image_tokens: dict[str, int] = field(default_factory=dict)
    accepts_image_size: bool = False  # False: any imageSize is refused with 400
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    sizes_1k: dict[str, tuple[int, int]] = field(default_factory=lambda: SIZES_1K)
    # Levels a request may name; the default is used when it names none. No default
    # means the model does not think (and refuses thinkingConfig).
    thinking_levels: tuple[str, ...] = ()
    default_thinking: str | None = None
    thought_tokens: dict[str, tuple[int, int]] = field(default_factory=lambda: FLASH_THOUGHTS)
    grounding: bool = False  # takes tools: [{"googleSearch": {}}]

    @property
    def makes_images(self) -> bool:
        return self.mime_type is not None

    @property
    def thinks(self) -> bool:
        """Reports thoughtsTokenCount and signs its parts."""
        return self.default_thinking is not None

    @property
    def generates_content(self) -> bool:
        return "generateContent" in self.methods

    @property
    def image_format(self) -> str:
        return "JPEG" if self.mime_type == "image/jpeg" else "PNG"


FLASH_25 = UpstreamModel(
    "gemini-2.5-flash-image",
    display_name="Nano Banana",
    description="Gemini 2.5 Flash Image",
    version="2.0",
    input_token_limit=65536,  # the sandbox's figure: not checked against Google's page
    output_token_limit=32768,
    mime_type="image/png",
    image_tokens={"1K": 1290},
)
NANO_BANANA_21 = UpstreamModel(
    "gemini-nano-banana-2.1",
    display_name="Nano Banana 2.1",
    description="Gemini Nano Banana 2.1: image generation and conversational editing",
    version="2.1",
    input_token_limit=131072,  # no figure found for 2.1: 3.1 Flash Image's
    output_token_limit=32768,
    mime_type="image/jpeg",
    # 1120 at 1K is published; 2K and 4K are not, so 3.1 Flash Image's figures stand in.
    # (Third-party per-image prices, $0.1134 at 4K at $30/M, would mean 3780 at 4K.)
    image_tokens={"1K": 1120, "2K": 1680, "4K": 2520},
    accepts_image_size=True,
    aspect_ratios=ALL_ASPECT_RATIOS,
    sizes_1k=SIZES_1K_GEMINI_3,
    thinking_levels=("minimal", "medium", "high"),
    default_thinking="medium",
    grounding=True,
)
PRO = UpstreamModel(
    "gemini-3-pro-image",
    display_name="Nano Banana Pro",
    description="Gemini 3 Pro Image",
    version="3.0",
    input_token_limit=65536,  # the sandbox's figure: not checked against Google's page
    output_token_limit=32768,
    mime_type="image/jpeg",
    image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
    accepts_image_size=True,
    sizes_1k=SIZES_1K_GEMINI_3,
    # Pro always thinks and Google documents no level for it: the sandbox takes "high"
    # (what it does anyway) and refuses the other levels.
    thinking_levels=("high",),
    default_thinking="high",
    thought_tokens=PRO_THOUGHTS,
    grounding=True,
)
FLASH_31 = UpstreamModel(
    "gemini-3.1-flash-image",
    display_name="Nano Banana 2",
    description="Gemini 3.1 Flash Image",
    version="3.1",
    input_token_limit=131072,
    output_token_limit=32768,
    mime_type="image/jpeg",
    image_tokens={"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
    accepts_image_size=True,
    aspect_ratios=ALL_ASPECT_RATIOS,
    sizes_1k=SIZES_1K_GEMINI_3,
    thinking_levels=("minimal", "high"),
    default_thinking="minimal",  # third-party pages name minimal as its default
    grounding=True,
)
FLASH_LITE_31 = UpstreamModel(
    "gemini-3.1-flash-lite-image",
    display_name="Nano Banana 2 Lite",
    description="Gemini 3.1 Flash Lite Image",
    version="3.1",
    input_token_limit=65536,
    output_token_limit=4096,
    mime_type="image/jpeg",
    image_tokens={"1K": 1120},
    accepts_image_size=True,  # "1K" is accepted; 512, 2K and 4K are refused
    aspect_ratios=ALL_ASPECT_RATIOS,
    sizes_1k=SIZES_1K_GEMINI_3,
    thinking_levels=("minimal", "high"),
    default_thinking="minimal",  # no default found; minimal, as for 3.1 Flash Image
    grounding=False,
)
# Models that make no images, listed so that a client reading models.list must filter.
GEMINI_35_FLASH = UpstreamModel(
    "gemini-3.5-flash",
    display_name="Gemini 3.5 Flash",
    description="Gemini 3.5 Flash",
    version="3.5",
    input_token_limit=1048576,  # https://ai.google.dev/gemini-api/docs/models/gemini-3.5-flash
    output_token_limit=65536,
    methods=TEXT_METHODS,
    thinking_levels=THINKING_LEVELS,
    default_thinking="high",  # Gemini 3 models think dynamically ("high") by default
    grounding=True,
)
GEMINI_31_FLASH_LITE = UpstreamModel(
    "gemini-3.1-flash-lite",
    display_name="Gemini 3.1 Flash-Lite",
    description="Gemini 3.1 Flash-Lite",
    version="3.1",
    input_token_limit=1048576,
    output_token_limit=65536,
    methods=TEXT_METHODS,
    thinking_levels=THINKING_LEVELS,
    default_thinking="minimal",
    grounding=True,
)
EMBEDDING = UpstreamModel(
    "gemini-embedding-001",
    display_name="Gemini Embedding 001",
    description="Obtain a distributed representation of a text.",
    version="001",
    input_token_limit=2048,
    output_token_limit=1,
    methods=EMBEDDING_METHODS,
)

# In the order models.list gives them: text first, as Google's list does, so that
# the image models are spread over more than one page.
MODELS = {
    m.name: m
    for m in (
        GEMINI_35_FLASH,
        GEMINI_31_FLASH_LITE,
        FLASH_25,
        NANO_BANANA_21,
        PRO,
        FLASH_31,
        FLASH_LITE_31,
        EMBEDDING,
    )
}
IMAGE_MODELS = tuple(name for name, m in MODELS.items() if m.makes_images)
# Ids Google has shut down (and what replaced them): the sandbox answers them with 404.
SHUT_DOWN = {
    "gemini-3-pro-image-preview": "gemini-3-pro-image",
    "gemini-3.1-flash-image-preview": "gemini-3.1-flash-image",
}


def find_model(name: str) -> UpstreamModel | None:
    """The behaviour of ``name``, or None for an id the API does not serve."""
    return MODELS.get(name)


def upstream_model(name: str) -> UpstreamModel:
    """The behaviour of ``name``; KeyError for an id the sandbox does not serve."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"models/{name} is not served by the sandbox") from None


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
