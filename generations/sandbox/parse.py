"""Reading a generateContent request the way Google's front end does.

Field names are accepted in camelCase (what the REST API documents and the SDKs
send) and in snake_case (which the API also accepts, as protobuf JSON does).
Anything the real API would refuse raises :class:`BadRequest` with a message
in the spirit of Google's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from generations.sandbox.specs import ASPECT_RATIOS, upstream_model

MODALITIES = frozenset({"TEXT", "IMAGE"})


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


def parse_request(model: str, raw: bytes) -> GenerateRequest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    texts, references = _read_contents(_field(body, "contents"))
    config = _object(body, "generationConfig")
    image_config = _object(config, "imageConfig")
    count = _field(config, "candidateCount")
    if count not in (None, 1):
        raise BadRequest(f"Multiple candidates is not enabled for models/{model}")
    return GenerateRequest(
        model=model,
        prompt="\n".join(texts),
        references=references,
        aspect_ratio=_aspect_ratio(image_config),
        image_size=_image_size(model, image_config),
        modalities=_modalities(config),
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


def _aspect_ratio(image_config: dict) -> str:
    value = _field(image_config, "aspectRatio")
    if value is None:
        return "1:1"
    if value not in ASPECT_RATIOS:
        raise BadRequest(
            f"Unsupported aspect ratio {value!r}. Supported values: {', '.join(ASPECT_RATIOS)}."
        )
    return value


def _image_size(model: str, image_config: dict) -> str:
    value = _field(image_config, "imageSize")
    spec = upstream_model(model)
    if value is None:
        return "1K"
    if not spec.accepts_image_size:
        raise BadRequest(f"imageSize is not supported for models/{model}.")
    if value not in spec.image_tokens:
        sizes = ", ".join(spec.image_tokens)
        raise BadRequest(f"Unsupported image size {value!r}. Supported values: {sizes}.")
    return value


def _modalities(config: dict) -> frozenset[str]:
    value = _field(config, "responseModalities")
    if not value:
        return MODALITIES
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("Invalid value at 'generation_config.response_modalities'.")
    asked = frozenset(v.upper() for v in value)
    if not asked <= MODALITIES:
        names = ", ".join(sorted(v.lower() for v in asked))
        raise BadRequest(f"Model does not support the requested response modalities: {names}")
    return asked
