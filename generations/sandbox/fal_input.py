"""What fal's nano-banana endpoints take, as the sandbox checks it (``fal`` routes them).

Facts relied on (fal's model pages as gathered in shared/CHANNELS.md, and fal's error
reference https://fal.ai/docs/documentation/model-apis/errors.md):

* Endpoints ``fal-ai/nano-banana``, ``fal-ai/nano-banana-pro``, ``fal-ai/nano-banana-2``,
  ``google/nano-banana-2.1``, each with ``/edit``; each is rendered by a sandbox model of
  ``specs`` (2.5 Flash Image, 3 Pro Image, 3.1 Flash Image, Nano Banana 2.1).
* Inputs ``prompt``, ``num_images`` 1–4, ``aspect_ratio`` (the model's ratios and
  "auto"), ``output_format`` png/jpeg/webp (default png), ``resolution`` where the model
  takes it ("0.5K" is Google's "512"), ``image_urls`` on ``/edit`` (up to 14; data URIs
  decoded, the sandbox's own /files read back, anything else a ``file_download_error``),
  ``seed``; ``sync_mode``, ``safety_tolerance``, ``limit_generations``,
  ``enable_web_search``, ``thinking_level`` and any other field are accepted and ignored,
  as a pydantic model ignores extra fields.
* A refusal is a list of ``{loc, msg, type, url, ctx?, input?}``; the types used are
  fal's (``one_of`` "Input should be 'a' or 'b'" with ``ctx.expected``,
  ``greater_than_equal``/``less_than_equal`` with ``ge``/``le``, ``sequence_too_short``,
  ``sequence_too_long``, ``image_load_error`` "Image load error", ``file_download_error``
  "File download error") or pydantic's where fal's reference has none (``missing``
  "Field required", ``int_type``, ``list_type``, ``dict_type``). ``url`` is
  ``https://docs.fal.ai/errors/#<type>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generations.sandbox import media
from generations.sandbox.specs import upstream_model

ERRORS_URL = "https://docs.fal.ai/errors/#"
MAX_REFERENCES = 14
FORMAT_NAMES = ("jpeg", "png", "webp")
SIZE_OF_RESOLUTION = {"0.5K": "512", "1K": "1K", "2K": "2K", "4K": "4K"}


@dataclass(frozen=True)
class Endpoint:
    model: str  # the sandbox model (specs) that renders it
    edit: bool
    resolutions: tuple[str, ...] = ()  # () : the endpoint has no resolution input


def _pair(base: str, model: str, resolutions: tuple[str, ...] = ()) -> dict[str, Endpoint]:
    return {
        base: Endpoint(model, False, resolutions),
        f"{base}/edit": Endpoint(model, True, resolutions),
    }


ENDPOINTS = {
    **_pair("fal-ai/nano-banana", "gemini-2.5-flash-image"),
    **_pair("fal-ai/nano-banana-pro", "gemini-3-pro-image", ("1K", "2K", "4K")),
    **_pair("fal-ai/nano-banana-2", "gemini-3.1-flash-image", ("0.5K", "1K", "2K", "4K")),
    **_pair("google/nano-banana-2.1", "gemini-nano-banana-2.1", ("1K", "2K", "4K")),
}
APPS = {"/".join(name.split("/")[:2]) for name in ENDPOINTS}


@dataclass(frozen=True)
class Params:
    prompt: str
    num_images: int
    aspect_ratio: str
    image_size: str
    output_format: str
    references: int = 0  # how many were sent (their bytes are not kept)


@dataclass
class Invalid(Exception):
    errors: list[dict] = field(default_factory=list)


def error(kind: str, msg: str, loc: list, value=None, ctx: dict | None = None) -> dict:
    item: dict = {"loc": ["body", *loc], "msg": msg, "type": kind, "url": ERRORS_URL + kind}
    if ctx:
        item["ctx"] = ctx
    if value is not None:
        item["input"] = _brief(value)
    return item


def _brief(value):
    """An input as an error quotes it, long strings (data URIs) cut to 200 characters."""
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_brief(v) for v in value]
    return value


def one_of(name: str, value, allowed: tuple[str, ...]) -> dict:
    quoted = [f"'{v}'" for v in allowed]
    listed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return error("one_of", f"Input should be {listed}", [name], value, {"expected": list(allowed)})


def parse_params(endpoint: Endpoint, body: object, files, origin: str) -> Params:
    """The request's inputs, or Invalid with fal's (pydantic-shaped) error list."""
    if not isinstance(body, dict):
        raise Invalid([error("dict_type", "Input should be a valid dictionary", [], body)])
    errors: list[dict] = []
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        if prompt is None:
            errors.append(error("missing", "Field required", ["prompt"], body))
        else:
            msg = "String should have at least 1 character"
            ctx = {"min_length": 1}
            errors.append(error("sequence_too_short", msg, ["prompt"], prompt, ctx))
    count = body.get("num_images", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        errors.append(error("int_type", "Input should be a valid integer", ["num_images"], count))
    elif count < 1:
        msg = "Input should be greater than or equal to 1"
        errors.append(error("greater_than_equal", msg, ["num_images"], count, {"ge": 1}))
    elif count > 4:
        msg = "Input should be less than or equal to 4"
        errors.append(error("less_than_equal", msg, ["num_images"], count, {"le": 4}))
    spec = upstream_model(endpoint.model)
    ratios = ("auto", *spec.aspect_ratios)
    ratio = body.get("aspect_ratio", "auto" if endpoint.edit else "1:1")
    if ratio not in ratios:
        errors.append(one_of("aspect_ratio", ratio, ratios))
    size = "1K"
    if endpoint.resolutions:
        resolution = body.get("resolution", "1K")
        if resolution not in endpoint.resolutions:
            errors.append(one_of("resolution", resolution, endpoint.resolutions))
        else:
            size = SIZE_OF_RESOLUTION[resolution]
    fmt = body.get("output_format", "png")
    if fmt not in FORMAT_NAMES:
        errors.append(one_of("output_format", fmt, FORMAT_NAMES))
    references = _references(endpoint, body, files, origin, errors)
    if errors:
        raise Invalid(errors)
    if ratio == "auto":
        first = references[0] if references else None
        ratio = (
            media.closest_ratio(first.width, first.height, spec.aspect_ratios) if first else "1:1"
        )
    return Params(prompt, count, ratio, size, fmt, len(references))


def _references(endpoint: Endpoint, body: dict, files, origin: str, errors: list) -> list:
    if not endpoint.edit:
        return []
    urls = body.get("image_urls")
    if urls is None:
        errors.append(error("missing", "Field required", ["image_urls"], body))
        return []
    if not isinstance(urls, list):
        errors.append(error("list_type", "Input should be a valid list", ["image_urls"], urls))
        return []
    if not urls:
        msg = "List should have at least 1 item after validation, not 0"
        errors.append(error("sequence_too_short", msg, ["image_urls"], urls, {"min_length": 1}))
        return []
    if len(urls) > MAX_REFERENCES:
        msg = f"List should have at most {MAX_REFERENCES} items after validation, not {len(urls)}"
        ctx = {"max_length": MAX_REFERENCES}
        errors.append(error("sequence_too_long", msg, ["image_urls"], len(urls), ctx))
        return []
    references = []
    for i, url in enumerate(urls):
        try:
            references.append(media.load_reference(url, files, origin))
        except media.BadImage as exc:
            if exc.reason == "download":
                errors.append(
                    error("file_download_error", "File download error", ["image_urls", i], url)
                )
            else:
                errors.append(error("image_load_error", "Image load error", ["image_urls", i], url))
    return references
