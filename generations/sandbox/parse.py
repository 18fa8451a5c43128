"""Reading a generateContent request the way Google's front end does.

Field names are accepted in camelCase (what the REST API documents and the SDKs
send) and in snake_case (which the API also accepts, as protobuf JSON does).
Anything the real API would refuse raises :class:`BadRequest` with a message
in the spirit of Google's.

What each model takes comes from ``specs`` (sources there): its aspect ratios and
imageSize values, its thinking levels (``generationConfig.thinkingConfig.thinkingLevel``,
https://ai.google.dev/gemini-api/docs/thinking; a model that does not think refuses any
thinkingConfig), and whether it takes the Google Search tool (``tools: [{"googleSearch":
{}}]``, https://ai.google.dev/gemini-api/docs/google-search). Text models answer TEXT only.
Where Google's exact wording is unknown the messages are the sandbox's own, and say so.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import json
import re
from dataclasses import dataclass
from email.parser import BytesParser

from generations.sandbox.specs import THINKING_LEVELS, UpstreamModel, upstream_model

MODALITIES = frozenset({"TEXT", "IMAGE"})
_THINKING_ENUM = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel"
)


class BadRequest(Exception):
    """400 INVALID_ARGUMENT; the message is what the client reads."""


@dataclass(frozen=True)
class GenerateRequest:
    model: str
    prompt: str  # all text parts, joined
    references: int = 0  # inline images sent along
    aspect_ratio: str = "1:1"
    image_size: str = "1K"
    modalities: frozenset[str] = MODALITIES
    thinking_level: str | None = None  # the level the model thinks at; None: it does not
    grounded: bool = False  # the Google Search tool was asked for


def parse_request(model: str, raw: bytes) -> GenerateRequest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    spec = upstream_model(model)
    texts, references = _read_contents(_field(body, "contents"))
    config = _object(body, "generationConfig")
    count = _field(config, "candidateCount")
    if count not in (None, 1):
        raise BadRequest(f"Multiple candidates is not enabled for models/{model}")
    modalities = _modalities(spec, config)
    image_config = _object(config, "imageConfig") if spec.makes_images else {}
    return GenerateRequest(
        model=model,
        prompt="\n".join(texts),
        references=references,
        aspect_ratio=_aspect_ratio(spec, image_config),
        image_size=_image_size(spec, image_config),
        modalities=modalities,
        thinking_level=_thinking_level(spec, config),
        grounded=_grounded(spec, body.get("tools")),
    )


def _field(obj: dict, camel: str):
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def _object(obj: dict, camel: str) -> dict:
    value = _field(obj, camel)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid value at '{camel}': expected an object.")
    return value


def _read_contents(contents) -> tuple[list[str], int]:
    if not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise BadRequest("Invalid value at 'contents': expected a list.")
    texts: list[str] = []
    references = 0
    for i, content in enumerate(contents):
        parts = _field(content, "parts") if isinstance(content, dict) else None
        if not parts or not isinstance(parts, list):
            raise BadRequest(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise BadRequest(
                    f"Invalid value at 'contents[{i}].parts[{j}]': expected an object."
                )
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            inline = _field(part, "inlineData")
            if inline is not None:
                _check_inline(inline, f"contents[{i}].parts[{j}].inline_data")
                references += 1
    return texts, references


def _check_inline(inline, where: str) -> None:
    if not isinstance(inline, dict):
        raise BadRequest(f"Invalid value at '{where}': expected an object.")
    mime = _field(inline, "mimeType") or ""
    if not mime.startswith("image/"):
        raise BadRequest(f"Unsupported MIME type: {mime or '(none)'}")
    data = inline.get("data")
    try:
        if not isinstance(data, str) or not data:
            raise ValueError
        base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, binascii.Error):
        raise BadRequest(
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
        ) from None


def _aspect_ratio(spec: UpstreamModel, image_config: dict) -> str:
    value = _field(image_config, "aspectRatio")
    if value is None:
        return "1:1"
    if value not in spec.aspect_ratios:
        supported = ", ".join(spec.aspect_ratios)
        raise BadRequest(f"Unsupported aspect ratio {value!r}. Supported values: {supported}.")
    return value


def _image_size(spec: UpstreamModel, image_config: dict) -> str:
    value = _field(image_config, "imageSize")
    if value is None:
        return "1K"
    if not spec.accepts_image_size:
        raise BadRequest(f"imageSize is not supported for models/{spec.name}.")
    if value not in spec.image_tokens:
        sizes = ", ".join(spec.image_tokens)
        raise BadRequest(f"Unsupported image size {value!r}. Supported values: {sizes}.")
    return value


def _modalities(spec: UpstreamModel, config: dict) -> frozenset[str]:
    offered = MODALITIES if spec.makes_images else frozenset({"TEXT"})
    value = _field(config, "responseModalities")
    if not value:
        return offered
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("Invalid value at 'generation_config.response_modalities'.")
    asked = frozenset(v.upper() for v in value)
    if not asked <= offered:
        names = ", ".join(sorted(v.lower() for v in asked - offered))
        raise BadRequest(f"Model does not support the requested response modalities: {names}")
    return asked


def _thinking_level(spec: UpstreamModel, config: dict) -> str | None:
    thinking = _field(config, "thinkingConfig")
    if thinking is None:
        return spec.default_thinking
    if not isinstance(thinking, dict):
        raise BadRequest(
            "Invalid value at 'generation_config.thinking_config': expected an object."
        )
    if not spec.thinks:
        # The sandbox's wording: Google's for this case was not found.
        raise BadRequest(f"Thinking is not enabled for models/{spec.name}.")
    value = _field(thinking, "thinkingLevel")
    if value is None or (isinstance(value, str) and value.upper() == "THINKING_LEVEL_UNSPECIFIED"):
        return spec.default_thinking
    level = value.lower() if isinstance(value, str) else None
    if level not in THINKING_LEVELS:
        raise BadRequest(
            "Invalid value at 'generation_config.thinking_config.thinking_level' "
            f"({_THINKING_ENUM}), {json.dumps(value)}"
        )
    if level not in spec.thinking_levels:
        supported = ", ".join(spec.thinking_levels)
        raise BadRequest(
            f"Thinking level {level!r} is not supported for models/{spec.name}. "
            f"Supported levels: {supported}."
        )
    return level


def _grounded(spec: UpstreamModel, tools) -> bool:
    if tools is None:
        return False
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRequest("Invalid value at 'tools': expected a list of objects.")
    if any(_field(t, "googleSearchRetrieval") is not None for t in tools):
        raise BadRequest(
            "google_search_retrieval is not supported. Please use google_search tool instead."
        )
    asked = any(_field(t, "googleSearch") is not None for t in tools)
    if asked and not spec.grounding:
        raise BadRequest("Search Grounding is not supported.")
    return asked


def multipart(raw: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    """(field name, file name, payload) of each part of a multipart/form-data body."""
    if "multipart/form-data" not in content_type.lower() or "boundary=" not in content_type:
        return []
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        return []
    return [
        (
            part.get_param("name", header="content-disposition") or "",
            part.get_filename() or "",
            part.get_payload(decode=True) or b"",
        )
        for part in message.iter_parts()
    ]
