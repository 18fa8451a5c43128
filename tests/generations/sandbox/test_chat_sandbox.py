"""The sandbox speaking a One API / New API style chat-completions relay."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import picture, png_data_uri, queue_counters
from tests.generations.sandbox.client import http

KEY = "sk-relay0123456789"
PRO = "gemini-3-pro-image"
SATURATED = "当前分组上游负载已饱和，请稍后再试"
REQUEST_ID = re.compile(r" \(request id: \d{23}[A-Za-z]{8}\)$")
MARKDOWN = re.compile(r"!\[image\]\((?P<url>[^)]+)\)")


def chat(
    url: str,
    model: str = PRO,
    prompt: str = "a lighthouse at dusk",
    *,
    key: str | None = KEY,
    content=None,
    **extra,
) -> httpx.Response:
    message = {"role": "user", "content": prompt if content is None else content}
    body = {"model": model, "messages": [message], **extra}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert REQUEST_ID.search(error["message"]), error["message"]
    return error


def image_in(message: dict) -> bytes:
    url = MARKDOWN.search(message["content"])["url"]
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    return http.get(url).content


# --- answers ---------------------------------------------------------------------------


def test_it_answers_an_openai_chat_completion_with_a_data_uri_image(sandbox_url):
    response = chat(sandbox_url)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == PRO
    (choice,) = body["choices"]
    assert (choice["index"], choice["finish_reason"]) == (0, "stop")
    assert choice["message"]["role"] == "assistant"
    assert MARKDOWN.search(choice["message"]["content"])["url"].startswith(
        "data:image/jpeg;base64,"
    )
    assert picture(image_in(choice["message"])).size == (1024, 1024)
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 1120  # Pro's 1K image, and the caption


@pytest.mark.parametrize(("suffix", "side"), [("-2k", 2048), ("-4k", 4096)])
def test_a_size_suffix_picks_the_size(sandbox_url, suffix, side):
    message = chat(sandbox_url, PRO + suffix).json()["choices"][0]["message"]
    assert picture(image_in(message)).size == (side, side)


def test_it_takes_openrouters_image_config(sandbox_url):
    response = chat(
        sandbox_url,
        "gemini-nano-banana-2.1",
        image_config={"aspect_ratio": "16:9", "image_size": "2K"},
    )
    assert picture(image_in(response.json()["choices"][0]["message"])).size == (2752, 1536)


def test_a_link_style_relay_links_to_a_file_it_serves():
    with running_sandbox(SandboxConfig(chat_image_style="link")) as url:
        message = chat(url, "gemini-2.5-flash-image").json()["choices"][0]["message"]
        link = MARKDOWN.search(message["content"])["url"]
        assert link.startswith(f"{url}/files/")
        served = http.get(link)
        assert served.headers["content-type"] == "image/png"
        assert picture(served.content).size == (1024, 1024)


def test_an_images_style_relay_answers_as_openrouter_does():
    with running_sandbox(SandboxConfig(chat_image_style="images")) as url:
        message = chat(url).json()["choices"][0]["message"]
    assert "![image]" not in message["content"] and message["content"]
    (image,) = message["images"]
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_it_reads_images_sent_in_the_message(sandbox_url):
    parts = [
        {"type": "text", "text": "the same, at night"},
        {"type": "image_url", "image_url": {"url": png_data_uri()}},
    ]
    with_image = chat(sandbox_url, content=parts).json()
    without = chat(sandbox_url, prompt="the same, at night").json()
    assert with_image["usage"]["prompt_tokens"] == without["usage"]["prompt_tokens"] + 258


def test_it_refuses_an_image_it_cannot_read(sandbox_url):
    parts = [
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
    ]
    error_of(chat(sandbox_url, content=parts), 400)


# --- refusals --------------------------------------------------------------------------


def test_it_refuses_missing_and_unknown_tokens():
    with running_sandbox(SandboxConfig(invalid_keys=frozenset({"sk-bad"}))) as url:
        missing = error_of(chat(url, key=None), 401)
        unknown = error_of(chat(url, key="sk-bad"), 401)
    assert missing["message"].startswith("未提供令牌") and missing["type"] == "new_api_error"
    assert unknown["message"].startswith("无效的令牌")


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash-image-4k", "gemini-3.5-flash"])
def test_a_model_without_a_channel_is_refused(sandbox_url, model):
    error = error_of(chat(sandbox_url, model), 503)
    assert error["message"].startswith(f"当前分组 default 下对于模型 {model} 无可用渠道")


def test_the_pool_saturated_answer(sandbox_url):
    response = chat(sandbox_url, prompt="a fox [sandbox:saturated]")
    error = error_of(response, 429)
    assert error["message"].startswith(SATURATED + " (request id: ")
    assert (error["type"], error["param"], error["code"]) == (
        "upstream_error",
        "429",
        "bad_response_status_code",
    )
    assert "当前分组上游负载已饱和".encode() in response.content  # sent as UTF-8, not escaped


FAULTS = {
    "429": (429, "upstream_error", "bad_response_status_code"),
    "capacity": (429, "upstream_error", "bad_response_status_code"),
    "credit": (403, "new_api_error", "insufficient_user_quota"),
    "daily": (403, "new_api_error", "insufficient_user_quota"),
    "503": (503, "upstream_error", "bad_response_status_code"),
    "500": (500, "upstream_error", "bad_response_status_code"),
    "504": (504, "upstream_error", "bad_response_status_code"),
    "region": (400, "upstream_error", "bad_response_status_code"),
}


@pytest.mark.parametrize("trigger", FAULTS)
def test_it_answers_a_fault_in_the_relays_envelope(sandbox_url, trigger):
    status, kind, code = FAULTS[trigger]
    error = error_of(chat(sandbox_url, prompt=f"a fox [sandbox:{trigger}]"), status)
    assert (error["type"], error["code"]) == (kind, code)


def test_a_broke_key_has_no_quota():
    with running_sandbox(SandboxConfig(broke_keys=frozenset({KEY}))) as url:
        assert error_of(chat(url), 403)["code"] == "insufficient_user_quota"


@pytest.mark.parametrize(
    ("trigger", "finish"),
    [("blocked", "content_filter"), ("image_safety", "content_filter"), ("no_image", "stop")],
)
def test_an_answer_without_an_image_is_passed_through(sandbox_url, trigger, finish):
    body = chat(sandbox_url, prompt=f"a fox [sandbox:{trigger}]").json()
    choice = body["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == (finish, "")
    assert body["usage"]["completion_tokens"] == 0


def test_a_text_only_answer_has_text_and_no_image(sandbox_url):
    message = chat(sandbox_url, prompt="a fox [sandbox:text_only]").json()["choices"][0]["message"]
    assert message["content"] and "![image]" not in message["content"]


def test_malformed_and_truncated_answers(sandbox_url):
    with pytest.raises(json.JSONDecodeError):
        chat(sandbox_url, prompt="a fox [sandbox:malformed]").json()
    message = chat(sandbox_url, prompt="a fox [sandbox:truncated]").json()["choices"][0]["message"]
    with pytest.raises(OSError):
        picture(image_in(message))


def test_it_counts_what_it_generated(sandbox_url):
    chat(sandbox_url, prompt="one")
    chat(sandbox_url, prompt="one [sandbox:saturated]")  # refused: not submitted upstream
    assert queue_counters(sandbox_url)["submitted_by_prompt"] == {"one": 1}
