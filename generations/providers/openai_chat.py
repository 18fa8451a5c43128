"""Relays that hand images back from OpenAI-style chat completions.

Request: ``POST {base_url}/chat/completions`` (``base_url`` ends in ``/v1``), ``Authorization:
Bearer``, one user message whose content is the prompt as a text part followed by every
reference as an ``image_url`` part holding a ``data:`` URI (OpenAI's vision message format,
which the relays accept for image models). The size goes the way OpenRouter documents it
(openrouter.ai/docs, "Image Generation"): ``modalities: ["image", "text"]`` and
``image_config: {aspect_ratio, image_size}`` (``image_size`` 1K/2K/4K, only when the model
takes a size); relays that do not know these fields drop them. Masks have no field here.

Answer: the image is somewhere in ``choices[0].message``, in one of the shapes relays use:

* ``message.images[].image_url.url`` (OpenRouter; a ``data:`` URI);
* ``content`` as a list of parts, the image in an ``image_url`` part;
* ``content`` as text holding a markdown image ``![…](data:image/png;base64,…)`` or
  ``![…](https://…)``, a bare ``data:`` URI, a markdown link or a bare URL to an image.

The first shape that holds an image wins (relays often repeat the image in several). URLs
are fetched through :func:`safe_fetch.fetch_image`, except those on the provider's own
origin (same scheme, host and port as ``base_url``), which the admin configured: those go
through the provider's client (the offline sandbox serves its images so).

Usage: ``usage.prompt_tokens`` / ``completion_tokens`` (``completion_tokens_details``
splits ``image_tokens`` and ``reasoning_tokens`` where a relay reports them). Relays price
these routes per call; the route's per-image price does the billing.

Errors come in OpenAI's envelope and are classified by :func:`openai_images.classify_error`
(which also knows One API / New API's "当前分组上游负载已饱和" pool-saturation answer). A 200
without an image is ``no_image``; one stopped by a content filter (``finish_reason:
content_filter``, or Gemini's ``IMAGE_SAFETY``… passed on as ``native_finish_reason``)
is ``blocked``. The model list is ``GET {base_url}/models``, as for the Images API.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from django.utils.translation import gettext_lazy

from generations.failures import ErrorKind
from generations.providers.base import (
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    Usage,
)
from generations.providers.common import (
    as_int,
    corrupt,
    data_uri,
    decode_data_uri,
    excerpt,
    fetched,
    json_body,
    origin_fetcher,
    scrubbed,
    sniffed_image,
    transport_error,
)
from generations.providers.gemini import BLOCK_MESSAGES
from generations.providers.openai_images import (
    BLOCKED_MESSAGE,
    OpenAIImagesProvider,
    classify_error,
)

MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
BARE_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/]+={0,2}")
BARE_URL = re.compile(r"https?://[^\s<>()\"']+")
IMAGE_PATH = re.compile(r"\.(?:png|jpe?g|webp|gif)(?:$|[?#])", re.IGNORECASE)
TEXT_EXCERPT_CHARS = 160
SIZES = frozenset({"1K", "2K", "4K"})


class OpenAIChatProvider(Provider):
    key_help = gettext_lazy(
        "A relay's key (from its dashboard) and its base URL ending in /v1. Relays charge "
        "per call, each its own price: enter the relay's price per image on the routes. "
        "Test connection lists the relay's models (free)."
    )
    """One image per ``/chat/completions`` call."""

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def list_models(self) -> list[str]:
        """``GET {base_url}/models``, keeping image models (the Images provider's listing)."""
        return OpenAIImagesProvider(
            self.base_url, self.api_key, self.timeouts, self.client
        ).list_models()

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "accept": "application/json"}

    def _generate(self, request: ImageRequest) -> ImageResult:
        try:
            response = self.client.post(
                f"{self.base_url}/chat/completions",
                json=build_request_body(request),
                headers=self._headers,
                timeout=self.timeouts.as_httpx(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_error(exc) from None  # `from None`: the request holds the key
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        fetch = origin_fetcher(
            self.base_url, self.client, self._headers, timeout=self.timeouts.read
        )
        return parse_response(
            json_body(response),
            http_status=response.status_code,
            response_id=response.headers.get("x-request-id", ""),
            fetch=fetch,
        )


def build_request_body(request: ImageRequest) -> dict:
    content: list[dict] = [{"type": "text", "text": request.prompt}]
    content += [
        {"type": "image_url", "image_url": {"url": data_uri(ref.data, ref.mime_type)}}
        for ref in request.references
    ]
    image_config = {"aspect_ratio": request.aspect_ratio}
    if request.image_size in SIZES:
        image_config["image_size"] = request.image_size
    return {
        "model": request.upstream_model,
        "messages": [{"role": "user", "content": content}],
        "modalities": ["image", "text"],
        "image_config": image_config,
        "stream": False,
    }


# --- a 200 --------------------------------------------------------------------------


def parse_response(
    body: Any, *, http_status: int = 200, response_id: str = "", fetch=None
) -> ImageResult:
    """A chat completion → its image, or why there is none. The call was billed by the time
    a 200 arrives: every error here carries ``may_have_been_billed`` and the usage."""
    if not isinstance(body, dict):
        raise corrupt(f"response body is {type(body).__name__}, not an object", http_status)
    if "error" in body and "choices" not in body:  # a relay wrapping an error in a 200
        raise classify_error(502, json.dumps(body), {})
    usage = usage_from(body.get("usage"))
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise corrupt("response has no choices[0].message", http_status, usage)
    sources, text = image_sources(message)
    billed = {"http_status": http_status, "may_have_been_billed": True, "usage": usage}
    if not sources:
        raise _no_image(choice, text, billed)
    images = tuple(_image(src, fetch, usage, http_status) for src in sources)
    extra = {"finish_reason": choice.get("finish_reason")} if choice.get("finish_reason") else {}
    return ImageResult(
        images=images,
        usage=usage,
        text=text,
        model_version=str(body.get("model") or ""),
        response_id=str(body.get("id") or response_id),
        http_status=http_status,
        extra=extra,
    )


def image_sources(message: dict) -> tuple[list[str], str]:
    """The image URLs / data URIs of a message (first shape that has any) and its text."""
    content = message.get("content")
    texts: list[str] = []
    parts: list[str] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            url = _url_of(part.get("image_url"))
            if url:
                parts.append(url)
    elif isinstance(content, str):
        texts.append(content)
    text = "\n".join(t for t in texts if t)
    listed = [u for u in (_url_of(i.get("image_url")) for i in _dicts(message.get("images"))) if u]
    for found in (listed, parts, *_in_text(text)):
        if found:
            return _unique(found), _without_images(text)
    return [], text.strip()


def _in_text(text: str):
    """Candidates from text, best first: markdown images, bare data URIs, markdown links
    and bare URLs that look like images, then any markdown link."""
    yield [m.group(1) for m in MARKDOWN_IMAGE.finditer(text)]
    yield [m.group(0) for m in BARE_DATA_URI.finditer(text)]
    links = [m.group(1) for m in MARKDOWN_LINK.finditer(text)]
    yield [u for u in links if u.startswith("data:image/") or IMAGE_PATH.search(u)]
    yield [u.rstrip(".,;") for u in BARE_URL.findall(text) if IMAGE_PATH.search(u.rstrip(".,;"))]
    yield [u for u in links if u.startswith(("https://", "http://"))]


def _without_images(text: str) -> str:
    text = MARKDOWN_IMAGE.sub("", text)
    text = BARE_DATA_URI.sub("", text)
    return text.strip()


def _url_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    return ""


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _unique(urls: list[str]) -> list[str]:
    return list(dict.fromkeys(u.strip() for u in urls if u.strip()))


def _image(source: str, fetch, usage: Usage, http_status: int) -> GeneratedImage:
    if source.startswith("data:"):
        try:
            data = decode_data_uri(source)
        except ValueError as exc:
            raise corrupt(str(exc), http_status, usage) from None
    elif source.startswith(("https://", "http://")):
        if fetch is None:
            raise corrupt(
                "image sent as a URL where only inline data is accepted", http_status, usage
            )
        data = fetched(source, fetch, usage, http_status)
    else:
        raise corrupt(f"unusable image reference {excerpt(source, 40)!r}", http_status, usage)
    return sniffed_image(data, usage, http_status)


def _no_image(choice: dict, text: str, billed: dict) -> ProviderError:
    finish = str(choice.get("finish_reason") or "")
    native = str(choice.get("native_finish_reason") or "")
    detail = f"200 without an image (finish_reason={finish or 'none'}"
    detail += f", native_finish_reason={native})" if native else ")"
    if native in BLOCK_MESSAGES:
        return ProviderError(
            ErrorKind.BLOCKED, str(BLOCK_MESSAGES[native]), detail=detail, **billed
        )
    if finish == "content_filter":
        return ProviderError(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE), detail=detail, **billed)
    if text:
        message = f'The model answered with text only: "{excerpt(text, TEXT_EXCERPT_CHARS)}"'
    else:
        message = "The model returned neither an image nor text."
    return ProviderError(ErrorKind.NO_IMAGE, message, detail=detail, **billed)


def usage_from(usage: Any) -> Usage:
    """OpenAI chat ``usage`` → :class:`Usage`: completion tokens are image output unless the
    details split image and reasoning tokens out."""
    if not isinstance(usage, dict):
        return Usage()
    prompt = as_int(usage.get("prompt_tokens"))
    completion = as_int(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    details = usage.get("completion_tokens_details")
    details = details if isinstance(details, dict) else {}
    reasoning = as_int(details.get("reasoning_tokens"))
    if "image_tokens" in details:
        image = as_int(details.get("image_tokens"))
        text = max(completion - image - reasoning, 0)
    else:
        image, text = max(completion - reasoning, 0), 0
    return Usage(
        input_tokens=prompt,
        input_image_tokens=as_int(prompt_details.get("image_tokens"))
        if isinstance(prompt_details, dict)
        else 0,
        output_text_tokens=text,
        output_image_tokens=image,
        thinking_tokens=reasoning,
        total_tokens=as_int(usage.get("total_tokens")) or prompt + completion,
    )
