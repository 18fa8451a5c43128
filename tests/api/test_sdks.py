"""The official SDKs, unchanged, against a live nanoweb (ASGI + worker + sandbox upstream)."""

import base64
import io

import httpx
import pytest
from PIL import Image as PILImage

from accounts import quotas
from accounts.models import LedgerEntry
from generations.models import Generation, Image
from tests.factories import make_route, png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def ratio(data: bytes) -> float:
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        return im.width / im.height


def test_the_openai_sdk_generates_edits_and_fetches_urls(api_server, alice, alice_token):
    from openai import OpenAI

    client = OpenAI(base_url=api_server + "/v1", api_key=alice_token, max_retries=0)
    assert "sandbox" in [m.id for m in client.models.list().data]

    result = client.images.generate(
        model="sandbox",
        prompt="a lighthouse at dusk",
        size="1536x1024",
        n=2,
        response_format="b64_json",
    )
    assert len(result.data) == 2
    for item in result.data:
        assert ratio(base64.b64decode(item.b64_json)) == pytest.approx(3 / 2, rel=0.03)
    assert result.usage.output_tokens > 0 and result.usage.total_tokens > 0

    linked = client.images.generate(
        model="sandbox", prompt="a fox", size="1024x1536", response_format="url"
    )
    fetched = httpx.get(linked.data[0].url, timeout=10)
    assert fetched.status_code == 200
    assert ratio(fetched.content) == pytest.approx(2 / 3, rel=0.03)
    assert httpx.get(linked.data[0].url + "x", timeout=10).status_code == 403

    edited = client.images.edit(
        model="sandbox",
        prompt="the same in winter",
        image=[
            ("a.png", png_bytes(300, 200), "image/png"),
            ("b.png", png_bytes(200, 200), "image/png"),
        ],
        size="1024x1024",
    )
    assert ratio(base64.b64decode(edited.data[0].b64_json)) == pytest.approx(1, rel=0.03)
    details = edited.usage.input_tokens_details  # the two references count as image tokens
    assert details.image_tokens == 2 * 258 and details.text_tokens > 0
    assert details.image_tokens + details.text_tokens == edited.usage.input_tokens

    # The images are alice's, in her gallery and her ledger, like the studio's.
    made = Generation.objects.filter(user=alice, source="api", status="succeeded")
    assert made.count() == 4
    assert Image.objects.filter(user=alice).count() == 4
    assert made.get(prompt="the same in winter").references.count() == 2
    assert LedgerEntry.objects.filter(user=alice, kind="settle").count() == 4
    assert quotas.ledger_problems() == []


def test_the_openai_sdk_gets_clear_errors(api_server, alice, alice_token):
    import openai

    client = openai.OpenAI(base_url=api_server + "/v1", api_key=alice_token, max_retries=0)
    model = client.models.retrieve("sandbox")
    assert (model.id, model.object, model.owned_by) == ("sandbox", "model", "nanoweb")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("dall-e-3")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="dall-e-3", prompt="x")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as streamed:
        client.images.generate(model="sandbox", prompt="x", stream=True)
    assert streamed.value.body["param"] == "stream"
    with pytest.raises(openai.NotFoundError) as nowhere:  # no Django HTML page
        client.get("/nothing-here", cast_to=object)
    assert nowhere.value.body["code"] == "not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="sandbox", prompt="x", size="big")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=api_server + "/v1", api_key="nw_nope", max_retries=0
        ).images.generate(model="sandbox", prompt="x")
    alice.daily_image_limit = 0
    alice.save()
    with pytest.raises(openai.RateLimitError) as over:
        client.images.generate(model="sandbox", prompt="x")
    assert "Daily image limit" in over.value.body["message"]
    assert over.value.response.headers["x-should-retry"] == "false"
    assert int(over.value.response.headers["Retry-After"]) > 0
    assert not Generation.objects.filter(user=alice).exists()


def test_the_google_genai_sdk_generates_and_streams(api_server, alice, alice_token):
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=alice_token, http_options=types.HttpOptions(base_url=api_server, timeout=60_000)
    )
    config = types.GenerateContentConfig(
        response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9")
    )
    response = client.models.generate_content(
        model="gemini-3.1-flash-image", contents="a lighthouse at dusk", config=config
    )
    images = [p.inline_data for p in response.candidates[0].content.parts if p.inline_data]
    assert len(images) == 1 and images[0].mime_type.startswith("image/")
    assert ratio(images[0].data) == pytest.approx(16 / 9, rel=0.03)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.total_token_count > 0
    assert response.model_version and response.response_id

    reference = types.Part.from_bytes(data=png_bytes(120, 90), mime_type="image/png")
    chunks = list(
        client.models.generate_content_stream(
            model="sandbox",
            contents=[reference, "the same lighthouse in winter"],
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="1:1"),
            ),
        )
    )
    streamed = [
        p.inline_data for c in chunks for p in c.candidates[0].content.parts if p.inline_data
    ]
    assert len(streamed) == 1 and ratio(streamed[0].data) == pytest.approx(1, rel=0.03)
    usage = chunks[-1].usage_metadata
    prompt_details = {d.modality: d.token_count for d in usage.prompt_tokens_details}
    assert prompt_details[types.MediaModality.IMAGE] == 258  # the reference
    assert sum(prompt_details.values()) == usage.prompt_token_count

    with pytest.raises(genai.errors.ClientError) as missing:
        client.models.generate_content(model="imagen-9", contents="x", config=config)
    assert missing.value.code == 404
    with pytest.raises(genai.errors.ClientError) as missing:
        client.models.get(model="imagen-9")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    with pytest.raises(genai.errors.ClientError) as unserved:
        client.models.count_tokens(model="sandbox", contents="x")
    assert unserved.value.code == 404 and unserved.value.status == "NOT_FOUND"
    assert Generation.objects.filter(user=alice, source="api", status="succeeded").count() == 2


@pytest.mark.parametrize("api_version", [None, "v1beta"])  # None: the SDK's default, v1
def test_the_google_genai_sdk_lists_and_gets_models(api_server, alice, alice_token, api_version):
    from google import genai
    from google.genai import types

    make_route("nano-banana")  # a second model, so that pages of one take two requests
    options = types.HttpOptions(base_url=api_server, timeout=60_000, api_version=api_version)
    client = genai.Client(api_key=alice_token, http_options=options)
    pager = client.models.list(config={"page_size": 1})
    assert len(pager.page) == 1
    models = list(pager)
    assert [m.name for m in models] == ["models/nano-banana", "models/sandbox"]
    sandbox = models[1]
    assert sandbox.display_name == "Sandbox (offline)" and sandbox.version
    assert sandbox.input_token_limit > 0 and sandbox.output_token_limit > 0
    assert sandbox.supported_actions == ["generateContent"]
    fetched = client.models.get(model="sandbox")
    assert fetched.name == "models/sandbox" and fetched.description == sandbox.description
    assert client.models.get(model="gemini-2.5-flash-image").name == "models/nano-banana"
