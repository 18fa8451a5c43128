"""Calling a running sandbox the way a Gemini client would (plain httpx, no SDK)."""

from __future__ import annotations

import base64
import io
import json
from functools import cache

import httpx
from PIL import Image

from tests.factories import GEMINI_FIXTURES

KEY = "test-key-0123456789"
FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image"
FLASH_31 = "gemini-3.1-flash-image"
NB21 = "gemini-nano-banana-2.1"
LITE = "gemini-3.1-flash-lite-image"
TEXT_MODEL = "gemini-3.5-flash"
SHUT_DOWN = ("gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview")
# In CI the repository is cloned with `shared/` as a sibling of the repo root.
FIXTURES = GEMINI_FIXTURES
# One client for the whole run: a fresh one per call costs ~30 ms of TLS set-up.
http = httpx.Client()


def generate(
    url: str,
    model: str = FLASH,
    prompt: str = "a lighthouse at dusk",
    *,
    key: str | None = KEY,
    image_config: dict | None = None,
    modalities: list[str] | None = None,
    thinking: dict | None = None,
    tools: list[dict] | None = None,
    body: dict | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    if body is None:
        config: dict = {}
        if image_config:
            config["imageConfig"] = image_config
        if modalities:
            config["responseModalities"] = modalities
        if thinking is not None:
            config["thinkingConfig"] = thinking
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        body["generationConfig"] = config
        if tools is not None:
            body["tools"] = tools
    headers = {"x-goog-api-key": key} if key else {}
    return http.post(
        f"{url}/v1beta/models/{model}:generateContent",
        json=body,
        headers=headers,
        timeout=timeout,
    )


def list_models(url: str, key: str | None = KEY, **params) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    return http.get(f"{url}/v1beta/models", params=params, headers=headers, timeout=10.0)


def get_model(url: str, model: str, key: str | None = KEY) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    return http.get(f"{url}/v1beta/models/{model}", headers=headers, timeout=10.0)


def parts(response: httpx.Response) -> list[dict]:
    return response.json()["candidates"][0]["content"]["parts"]


def image_of(response: httpx.Response) -> Image.Image:
    inline = parts(response)[-1]["inlineData"]
    image = Image.open(io.BytesIO(base64.b64decode(inline["data"])))
    image.load()
    return image


def png_b64(size=(40, 30), color=(10, 200, 90)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@cache
def recorded(name: str, interaction: int = 0) -> dict:
    path = FIXTURES / name
    assert path.is_file(), f"recorded Gemini fixtures missing: expected {path.resolve()}"
    return json.loads(path.read_text())["interactions"][interaction]["response"]["body"]


def shape(value):
    """The keys of ``value`` all the way down, with leaves reduced to their type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__
