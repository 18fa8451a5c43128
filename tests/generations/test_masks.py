"""Edit masks: accepted only by a model that says it takes them, checked before anything is
charged, kept in order with the image they apply to, and sent only to OpenAI-format routes."""

import io

import httpx
import pytest
from django.test import Client
from PIL import Image as PILImage

from accounts import quotas, tokens
from generations import engine, images, jobs
from generations.models import Generation
from generations.providers import openai_images
from generations.providers.base import ImageRequest, Reference
from generations.sandbox import openai_images as sandbox_images
from generations.sandbox.openai_images import InvalidRequest
from tests.factories import job_request, png_bytes
from tests.generations.test_failover import openai_route

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def mask_png(width=64, height=48, mode="RGBA") -> bytes:
    """Opaque everywhere but a transparent square: the part the model may change."""
    im = PILImage.new(mode, (width, height), (0, 0, 0, 255) if mode == "RGBA" else 0)
    if mode == "RGBA":
        im.paste((0, 0, 0, 0), (8, 8, 24, 24))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def masked_model(sandbox_model, sandbox_url):
    """The sandbox model served only by an OpenAI-format route that takes masks."""
    sandbox_model.routes.update(enabled=False)
    openai_route(sandbox_url, priority=1)
    sandbox_model.supports_mask = True
    sandbox_model.save()
    return sandbox_model


def test_a_mask_must_be_a_png_with_an_alpha_channel():
    assert images.clean_mask(mask_png()).mime_type == "image/png"
    with pytest.raises(images.ImageRejected, match="no alpha channel"):
        images.clean_mask(png_bytes())
    jpeg = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(jpeg, "JPEG")
    with pytest.raises(images.ImageRejected, match="must be a PNG"):
        images.clean_mask(jpeg.getvalue())


@pytest.mark.parametrize(
    "supports, refs, mask, message",
    [
        (False, [png_bytes()], mask_png(), "takes no mask"),
        (True, [], mask_png(), "needs the image it applies to"),
        (True, [png_bytes(64, 48)], mask_png(32, 32), "must be the size of the first image"),
    ],
)
def test_a_mask_the_request_cannot_use_is_refused_before_anything_is_charged(
    alice, sandbox_model, supports, refs, mask, message
):
    sandbox_model.supports_mask = supports
    sandbox_model.save()
    req = job_request(sandbox_model, reference_bytes=refs, mask=images.clean_mask(mask))
    with pytest.raises(jobs.SubmitError, match=message) as refused:
        jobs.submit(alice, req)
    assert refused.value.field == "mask"
    assert not Generation.objects.exists() and quotas.summary(alice).images_today == 0


def test_a_masked_edit_goes_to_the_openai_route_with_its_mask(alice, masked_model):
    first, second = png_bytes(64, 48), png_bytes(30, 30, color=(1, 2, 3))
    req = job_request(
        masked_model, reference_bytes=[first, second], mask=images.clean_mask(mask_png(64, 48))
    )
    job = jobs.submit(alice, req)[0]
    assert job.mask is not None
    assert [u.sha256 for u in job.ordered_references()] == [r.sha256 for r in req.references]

    sent = engine.build_request(job, masked_model.routes.get(enabled=True))
    assert sent.mask is not None and sent.mask.data == req.mask.data
    assert sent.references[0].data == req.references[0].data  # the mask's image stays first

    assert engine.run_generation(job.pk) is None  # the sandbox checks the mask as OpenAI does
    job.refresh_from_db()
    assert job.status == "succeeded" and job.route.provider.kind == "openai"
    assert quotas.ledger_problems() == []


def test_a_masked_job_never_fails_over_to_a_gemini_route(alice, masked_model):
    job = jobs.submit(
        alice,
        job_request(
            masked_model, reference_bytes=[png_bytes()], mask=images.clean_mask(mask_png())
        ),
    )[0]
    masked_model.routes.filter(provider__kind="openai").update(enabled=False)
    masked_model.routes.filter(provider__kind="gemini").update(enabled=True)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "no_route", True)
    assert "takes an edit mask" in job.error_message


def test_a_retry_keeps_the_mask_and_says_so_when_it_is_gone(alice, masked_model):
    job = jobs.submit(
        alice,
        job_request(
            masked_model, reference_bytes=[png_bytes()], mask=images.clean_mask(mask_png())
        ),
    )[0]
    engine.fail(job, "transient", "Down.")
    job.refresh_from_db()
    with job.mask.file.storage.open(job.mask.file.name) as stored:
        assert jobs.request_like(job).mask.data == stored.read()
    job.mask.file.storage.delete(job.mask.file.name)  # gone from the disk
    with pytest.raises(jobs.SubmitError, match=r"^The edit mask .*is no longer available"):
        jobs.request_like(job)


def test_the_same_edit_with_another_mask_is_not_a_duplicate(sandbox_model):
    sandbox_model.supports_mask = True
    plain = job_request(sandbox_model, reference_bytes=[png_bytes()])
    masked = job_request(
        sandbox_model, reference_bytes=[png_bytes()], mask=images.clean_mask(mask_png())
    )
    assert jobs.fingerprint(plain) != jobs.fingerprint(masked)


def test_the_provider_sends_the_mask_as_a_multipart_part():
    request = ImageRequest(
        upstream_model="gpt-image-1",
        prompt="a hat",
        aspect_ratio="1:1",
        references=(Reference(png_bytes(), "image/png"),),
        mask=Reference(mask_png(), "image/png"),
    )
    path, body = openai_images.build_request(request)
    assert path == "/images/edits"
    assert [name for name, _ in body["files"]] == ["image[]", "mask"]
    assert body["files"][1][1][1] == request.mask.data


def _multipart(image: bytes, mask: bytes) -> tuple[bytes, str]:
    built = httpx.Request(
        "POST",
        "http://x/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "a hat"},
        files=[("image[]", ("a.png", image, "image/png")), ("mask", ("m.png", mask, "image/png"))],
    )
    return built.read(), built.headers["content-type"]


@pytest.mark.parametrize(
    "mask, code",
    [
        (mask_png(32, 32), "invalid_image_dimensions"),
        (png_bytes(), "invalid_image_format"),
        (b"not a png", "invalid_image_file"),
    ],
)
def test_the_sandbox_checks_a_mask_as_openai_does(mask, code):
    with pytest.raises(InvalidRequest) as refused:
        sandbox_images.parse_edits(*_multipart(png_bytes(64, 48), mask))
    assert (refused.value.param, refused.value.code) == ("mask", code)
    assert sandbox_images.parse_edits(*_multipart(png_bytes(64, 48), mask_png(64, 48)))


def test_the_openai_edits_endpoint_takes_a_mask_where_the_model_does(alice, masked_model, settings):
    settings.NANOWEB_API_WAIT_SECONDS = 0.2  # no worker here: the job is checked, not run
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens.create(alice, 't').secret}"}

    def edit(mask: bytes):
        return Client().post(
            "/v1/images/edits",
            {
                "model": "sandbox",
                "prompt": "a hat",
                "image": io.BytesIO(png_bytes(64, 48)),
                "mask": io.BytesIO(mask),
            },
            **auth,
        )

    refused = edit(mask_png(10, 10)).json()["error"]
    assert refused["param"] == "mask" and "size of the first image" in refused["message"]
    no_alpha = edit(png_bytes(64, 48)).json()["error"]
    assert no_alpha["param"] == "mask" and "alpha" in no_alpha["message"]
    assert not Generation.objects.exists()

    assert edit(mask_png(64, 48)).status_code == 504  # admitted; still waiting for a worker
    job = Generation.objects.get()
    assert job.mask is not None and job.references.count() == 1

    masked_model.supports_mask = False
    masked_model.save()
    r = edit(mask_png(64, 48))
    assert r.status_code == 400 and r.json()["error"]["param"] == "mask"
