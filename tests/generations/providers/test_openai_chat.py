"""Relays answering images in chat completions, against a mocked transport."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers import common
from generations.providers.base import (
    ImageRequest,
    ProviderError,
    Reference,
    Timeouts,
    provider_class,
)
from generations.providers.gemini import classify_error as gemini_classify
from generations.providers.openai_chat import (
    OpenAIChatProvider,
    build_request_body,
    parse_response,
)
from generations.providers.openai_images import classify_error as images_classify
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

RELAY = "https://relay.example.cn/v1"
SANDBOX = "http://127.0.0.1:8765/v1"
KEY = "sk-relay-SECRET-0123456789abcdef"
SATURATED = "当前分组上游负载已饱和，请稍后再试 (request id: 20250423020142736330894dLoIRrS6)"


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "gemini-3-pro-image-preview")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "3:2")
    return ImageRequest(**kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def completion(message: dict, *, finish: str = "stop", usage: dict | None = None, **extra) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1763000000,
        "model": "gemini-3-pro-image-preview",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 1300, "total_tokens": 1312},
        **extra,
    }


def provider(handler, *, base: str = RELAY) -> OpenAIChatProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIChatProvider(base, KEY, Timeouts(read=5.0), client=client)


def answering(body, status: int = 200, headers: dict | None = None, base: str = RELAY) -> FakeFal:
    return FakeFal({("POST", f"{base}/chat/completions"): reply(status, body, headers)})


def test_it_is_the_registered_chat_provider():
    assert provider_class("openai_chat") is OpenAIChatProvider


# --- the request ------------------------------------------------------------------------


def test_the_prompt_and_references_go_in_one_user_message():
    png = image_bytes()
    fake = answering(completion({"content": f"![image](data:image/png;base64,{b64(png)})"}))
    req = request(references=(Reference(png, "image/png"),), image_size="2K")
    provider(fake).generate(req)
    sent = fake.sent[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content) == {
        "model": "gemini-3-pro-image-preview",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "an axolotl reading a newspaper"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{b64(png)}"},
                    },
                ],
            }
        ],
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "3:2", "image_size": "2K"},
        "stream": False,
    }


def test_no_size_is_sent_for_a_model_without_sizes():
    assert build_request_body(request())["image_config"] == {"aspect_ratio": "3:2"}


# --- every answer shape ------------------------------------------------------------------


def test_a_markdown_data_uri_image():
    png = image_bytes()
    body = completion({"content": f"Here you go!\n\n![image](data:image/png;base64,{b64(png)})"})
    result = parse_response(body)
    assert result.images[0].data == png and result.images[0].mime_type == "image/png"
    assert result.text == "Here you go!"
    assert result.response_id == "chatcmpl-abc123"


def test_a_bare_data_uri():
    jpeg = image_bytes("JPEG")
    result = parse_response(completion({"content": f"data:image/jpeg;base64,{b64(jpeg)}"}))
    assert result.images[0].mime_type == "image/jpeg"


def test_openrouter_style_images():
    png = image_bytes()
    message = {
        "content": "A sunset.",
        "images": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png)}"}}
        ],
    }
    result = parse_response(completion(message))
    assert result.images[0].data == png and result.text == "A sunset."


def test_content_as_a_list_of_parts():
    png = image_bytes()
    parts = [
        {"type": "text", "text": "Done."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png)}"}},
    ]
    result = parse_response(completion({"content": parts}))
    assert result.images[0].data == png and result.text == "Done."


def test_the_same_image_in_two_shapes_counts_once():
    uri = f"data:image/png;base64,{b64(image_bytes())}"
    message = {"content": f"![x]({uri})", "images": [{"image_url": {"url": uri}}]}
    assert len(parse_response(completion(message)).images) == 1


@pytest.mark.parametrize(
    "content",
    [
        "![image](https://cdn.relay.example.cn/i/abc.png)",
        "[download](https://cdn.relay.example.cn/i/abc.png)",
        "Your image: https://cdn.relay.example.cn/i/abc.png.",
        "[点击下载](https://cdn.relay.example.cn/i/abc)",
    ],
)
def test_image_urls_are_fetched_through_safe_fetch(monkeypatch, content):
    png = image_bytes()
    seen: list[str] = []

    def fake_fetch(url, *, max_bytes, timeout):
        seen.append(url)
        return png

    monkeypatch.setattr(common, "fetch_image", fake_fetch)
    fake = answering(completion({"content": content}))
    result = provider(fake).generate(request())
    assert result.images[0].data == png
    assert seen[0].startswith("https://cdn.relay.example.cn/i/abc")
    assert len(fake.sent) == 1  # nothing but the completion went through the keyed client


def test_an_image_on_the_relays_own_origin_is_fetched_with_its_client():
    png = image_bytes()
    fake = answering(
        completion({"content": "![image](http://127.0.0.1:8765/files/out.png)"}), base=SANDBOX
    )
    fake.routes[("GET", "http://127.0.0.1:8765/files/out.png")] = httpx.Response(200, content=png)
    result = provider(fake, base=SANDBOX).generate(request())
    assert result.images[0].data == png
    assert fake.sent[1].headers["authorization"] == f"Bearer {KEY}"


def test_an_image_on_another_port_of_the_same_host_is_not_the_own_origin():
    fake = answering(
        completion({"content": "![image](http://127.0.0.1:9999/files/out.png)"}), base=SANDBOX
    )
    err = failure(lambda: provider(fake, base=SANDBOX).generate(request()))
    assert err.kind == ErrorKind.CORRUPT  # safe_fetch refused it
    assert len(fake.sent) == 1


def test_usage_is_read_from_prompt_and_completion_tokens():
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": 1500,
        "total_tokens": 1520,
        "completion_tokens_details": {"reasoning_tokens": 200, "image_tokens": 1290},
    }
    png = image_bytes()
    result = parse_response(
        completion({"content": f"data:image/png;base64,{b64(png)}"}, usage=usage)
    )
    assert result.usage.input_tokens == 20
    assert result.usage.output_image_tokens == 1290
    assert result.usage.thinking_tokens == 200
    assert result.usage.output_text_tokens == 10
    assert result.usage.total_tokens == 1520


# --- no image ------------------------------------------------------------------------------


def test_text_only_is_no_image_and_billed():
    with pytest.raises(ProviderError) as info:
        parse_response(completion({"content": "I can't draw that, but here is a poem."}))
    err = info.value
    assert err.kind == ErrorKind.NO_IMAGE and err.may_have_been_billed
    assert "poem" in err.message and err.usage.input_tokens == 12


def test_a_content_filter_stop_is_blocked():
    with pytest.raises(ProviderError) as info:
        parse_response(completion({"content": ""}, finish="content_filter"))
    assert info.value.kind == ErrorKind.BLOCKED


def test_geminis_image_safety_passed_on_is_blocked():
    body = completion({"content": None})
    body["choices"][0]["native_finish_reason"] = "IMAGE_SAFETY"
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert info.value.kind == ErrorKind.BLOCKED


def test_a_damaged_inline_image_is_corrupt():
    bad = b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ProviderError) as info:
        parse_response(completion({"content": f"![i](data:image/png;base64,{bad})"}))
    assert info.value.kind == ErrorKind.CORRUPT


# --- errors ------------------------------------------------------------------------------


def relay_error(message: str, kind: str = "new_api_error", code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": "", "code": code}}


def test_a_saturated_relay_pool_is_transient_not_rate_limited():
    err = failure(lambda: provider(answering(relay_error(SATURATED), 429)).generate(request()))
    assert err.kind == ErrorKind.TRANSIENT and "saturated" in err.message


@pytest.mark.parametrize(
    "message",
    [
        SATURATED,
        "当前分组负载已饱和，请稍后再试，或升级账户以提升服务质量。",
        "当前模型gpt-image-1.5上游已饱和, 请稍后再试! (request id: upstream)",
    ],
)
def test_every_saturation_text_is_transient_in_both_relay_styles(message):
    body = json.dumps(relay_error(message, "upstream_error", "bad_response_status_code"))
    assert images_classify(429, body, {}).kind == ErrorKind.TRANSIENT
    assert gemini_classify(429, body, {}).kind == ErrorKind.TRANSIENT
    assert images_classify(500, message, {}).kind == ErrorKind.TRANSIENT  # plain text body


def test_a_saturated_answer_wrapped_in_a_200_is_transient():
    with pytest.raises(ProviderError) as info:
        parse_response(relay_error(SATURATED))
    assert info.value.kind == ErrorKind.TRANSIENT


def test_a_plain_429_is_still_rate_limited():
    body = relay_error("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    err = failure(lambda: provider(answering(body, 429, {"retry-after": "3"})).generate(request()))
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after == 3.0


def test_openai_error_codes_are_classified_as_for_the_images_api():
    bad_key = relay_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
    assert failure(lambda: provider(answering(bad_key, 401)).generate(request())).kind == (
        ErrorKind.KEY_INVALID
    )
    gone = relay_error("The model `x` does not exist", "invalid_request_error", "model_not_found")
    assert failure(lambda: provider(answering(gone, 404)).generate(request())).kind == (
        ErrorKind.MODEL_GONE
    )


@pytest.mark.parametrize(
    "body",
    [
        relay_error("user quota is not enough", "one_api_error", "insufficient_user_quota"),
        relay_error(
            "用户额度不足, 剩余额度: $0.000000", "new_api_error", "insufficient_user_quota"
        ),
        relay_error("令牌额度不足", "new_api_error"),
    ],
)
def test_a_relay_account_without_money_is_out_of_credit_not_a_bad_key(body):
    err = failure(lambda: provider(answering(body, 403)).generate(request()))
    assert err.kind == ErrorKind.OUT_OF_CREDIT


def test_googles_location_refusal_passed_on_by_a_relay_is_refused():
    body = relay_error(
        "User location is not supported for the API use. (request id: 2026)",
        "upstream_error",
        "bad_response_status_code",
    )
    err = failure(lambda: provider(answering(body, 400)).generate(request()))
    assert err.kind == ErrorKind.REFUSED


def test_the_key_is_scrubbed_from_errors():
    body = relay_error(f"invalid token {KEY}", "new_api_error")
    err = failure(lambda: provider(answering(body, 401)).generate(request()))
    assert KEY not in err.detail and KEY not in err.message


def test_a_lost_connection_may_have_been_billed():
    def handler(req):
        raise httpx.RemoteProtocolError("gone", request=req)

    err = failure(lambda: provider(handler).generate(request()))
    assert err.kind == ErrorKind.TRANSIENT and err.may_have_been_billed


def test_list_models_is_the_openai_listing():
    models = {"data": [{"id": "gemini-3-pro-image-preview"}, {"id": "gpt-4o-mini"}]}
    fake = FakeFal({("GET", f"{RELAY}/models"): reply(200, models)})
    assert provider(fake).list_models() == ["gemini-3-pro-image-preview"]
