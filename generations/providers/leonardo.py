"""Leonardo.ai's generations API for the Google models it serves (Nano Banana, Pro, 2).

Facts relied on (read late 2026):

* Create ``POST {base}/v2/generations`` with ``Authorization: Bearer <key>`` and
  ``{"model": "<id>", "parameters": {"prompt", "width", "height", "quantity", "seed",
  "prompt_enhance": "ON"|"OFF", "style_ids", "guidances": {"image_reference": [{"image":
  {"id", "type": "UPLOADED"|"GENERATED"}, "strength": "LOW"|"MID"|"HIGH"}]}}, "public":
  false}``; ``quantity`` 1–8; model ids ``gemini-2.5-flash-image`` (Nano Banana),
  ``gemini-image-2`` (Nano Banana Pro), ``nano-banana-2`` (up to 6 references each;
  docs.leonardo.ai/docs/generate-images-using-nano-banana, /docs/nano-banana-pro,
  /docs/nano-banana-2; /docs/nano-banana-21 names ``google/nano-banana-2.1`` with up to 14).
  The answer is ``{"generate": {"generationId", "apiCreditCost"}}`` (public client code
  reading the v2 answer; the v1 create answers ``sdGenerationJob`` with the same fields,
  and is read too). ``base`` is ``https://cloud.leonardo.ai/api/rest``.
* "Refer to the table below for valid height and width pairs" (the Nano Banana 2 page):
  only listed pairs are made as asked; public code that measured the outputs found other
  pairs silently redrawn as squares (1536x1536 came back 1024x1024, 2048x1536 as
  2048x2048). That table could not be read from here, so the defaults below
  (:data:`DEFAULT_SIZES`) are the native output sizes of the models themselves (Google's
  image-generation guide: 2.5 Flash Image's 1K table; the Gemini 3 table for Pro and 2,
  doubled at 2K and quadrupled at 4K, 16:9 at 1K being 1376x768 as in Leonardo's users'
  code). An admin replaces them per model in ``options["sizes"]``
  (``{"<model>": {"16:9": {"1K": [1376, 768]}}}``). A ratio or size with no pair is
  refused (``REFUSED``: another route may make it) rather than sent to be squared.
* References are uploaded first: ``POST {base}/v1/init-image {"extension": png|jpg|jpeg|
  webp}`` → ``{"uploadInitImage": {"id", "url", "fields", "key"}}`` where ``fields`` is a
  JSON string of presigned form fields; the file is then POSTed as multipart form data to
  ``url`` with those fields and ``file`` last, without the API key (the fields are the
  credential) (github:Leonardo-Interactive/leonardo-python-sdk docs/models/operations/
  uploadinitimagerequestbody.md, initimageuploadoutput.md, and public client code). Its
  ``id`` goes into ``image_reference`` as ``UPLOADED``. Upload targets are accepted only
  on https or on the configured base URL's own origin (the offline sandbox).
* Poll ``GET {base}/v1/generations/{id}`` → ``{"generations_by_pk": {"id", "status":
  PENDING|COMPLETE|FAILED, "generated_images": [{"id", "url", "nsfw", …}], "imageWidth",
  "imageHeight", "modelId", …}}`` (the SDK's getgenerationbyidgenerations.md, JobStatus,
  GeneratedImages). An image flagged ``nsfw`` is treated as blocked (not delivered). There
  is no documented cancel: ``cancel`` says it was too late (the generation may be billed).
  Leonardo's webhooks are configured per API key in its dashboard, not per request, so
  this kind polls only.
* Account ``GET {base}/v1/me`` → ``{"user_details": [{"user": {"id", "username"},
  "apiSubscriptionTokens", "apiPaidTokens", "apiConcurrencySlots", …}]}`` (the SDK's
  getuserselfresponsebody.md, userdetails.md): the free key check.
* Errors are ``{"error": "…", "path", "code"}``: 400 "not enough api tokens userId: …"
  (out of credit, as quoted from live answers in public code), content-moderation refusals
  (blocked), 401/403 bad key, 429 throttled, 5xx. Limits (shared/CHANNELS.md, from
  docs.leonardo.ai, medium confidence): about 10 generations at once and 100 creates a
  minute per key — set on the provider as ``max_concurrency`` and ``rpm``.
* Cost: Leonardo bills API credits and reports them as ``apiCreditCost`` at create; it is
  kept on the job (``UpstreamJob.urls["credits"]``) and in ``ImageResult.extra``, while the
  route's per-image Price rows settle the money (no dollar price per credit is published
  for every plan). Usage carries no tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    Pending,
    ProviderError,
    QueueProvider,
    Reference,
    UpstreamJob,
    Usage,
)
from generations.providers.common import (
    as_int,
    clean_text,
    corrupt,
    excerpt,
    images_at,
    json_body,
    loads_or_none,
    origin_fetcher,
    retry_after_header,
    same_origin,
    scrubbed,
    server_side,
    text_of,
    transport_error,
)

STATUSES = frozenset({"PENDING", "COMPLETE", "FAILED"})
STRENGTHS = ("LOW", "MID", "HIGH")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
NO_CREDIT_MARKS = ("not enough api tokens", "not enough tokens", "insufficient")
BLOCK_MARKS = ("moderation", "nsfw", "flagged", "inappropriate", "content policy")
MODEL_MARKS = ("model not found", "unknown model", "invalid model", "model does not exist")

# Google's own output sizes (see the module docstring): 2.5 Flash Image at 1K only …
_FLASH_1K = {
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
# … and the Gemini 3 models (Pro, 2) at 1K, doubled at 2K and quadrupled at 4K.
_GEMINI_3_1K = {
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
}


def _scaled(table: dict, sizes: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    return {
        ratio: {size: [w * k, h * k] for size, k in sizes.items()}
        for ratio, (w, h) in table.items()
    }


DEFAULT_SIZES: dict[str, dict[str, dict[str, list[int]]]] = {
    "gemini-2.5-flash-image": _scaled(_FLASH_1K, {"1K": 1}),
    "gemini-image-2": _scaled(_GEMINI_3_1K, {"1K": 1, "2K": 2, "4K": 4}),
    "nano-banana-2": _scaled(_GEMINI_3_1K, {"1K": 1, "2K": 2, "4K": 4}),
    "google/nano-banana-2.1": _scaled(_GEMINI_3_1K, {"1K": 1, "2K": 2, "4K": 4}),
}
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's content filter flagged this request. Rephrasing the prompt may help."
)


class LeonardoProvider(QueueProvider):
    """One generation of one image (``base_url`` like https://cloud.leonardo.ai/api/rest)."""

    key_help = gettext_lazy(
        "An API key from Leonardo.ai's web app (User settings → API access; a paid API "
        "plan's credits are used). It is a UUID, sent as a Bearer token. Base URL: "
        "https://cloud.leonardo.ai/api/rest. Documented limits: about 10 generations at "
        "once and 100 per minute per key — set Max concurrency 10 and RPM 100. Options: "
        '"sizes" (allowed width/height pairs per model, ratio and size), "style_ids", '
        '"reference_strength" (LOW, MID or HIGH; default MID).'
    )

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            return self._submit(request)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            response = self._call("GET", job.urls.get("get", ""), stage="poll")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "poll"
                )
            return self._answer(job, json_body(response), response.status_code)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def cancel(self, job: UpstreamJob) -> bool:
        return False  # Leonardo documents no cancel: the generation runs (and bills) on

    def test_connection(self) -> str:
        try:
            response = self._call("GET", f"{self.base_url}/v1/me", stage="account")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "account"
                )
            found = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None
        details = (found.get("user_details") or [{}])[0] if isinstance(found, dict) else {}
        details = details if isinstance(details, dict) else {}
        user = details.get("user") if isinstance(details.get("user"), dict) else {}
        credits = as_int(details.get("apiSubscriptionTokens")) + as_int(
            details.get("apiPaidTokens")
        )
        return _(
            "The key works (Leonardo user %(user)s, %(credits)s API credits left, "
            "%(slots)s generations at once)."
        ) % {
            "user": user.get("username") or "?",
            "credits": credits,
            "slots": details.get("apiConcurrencySlots") or "?",
        }

    def list_models(self) -> list[str]:
        raise ProviderError(
            ErrorKind.PERMANENT,
            _("Leonardo cannot list the models a key may call; use the key check instead."),
        )

    # --- the calls ---------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "accept": "application/json"}

    def _call(self, method: str, url: str, *, stage: str, **kwargs) -> httpx.Response:
        if not url or not same_origin(url, self.base_url):
            raise corrupt(f"refused to send the key to {url.split('?')[0]!r}", None)
        try:
            return self.client.request(
                method, url, headers=self._headers, timeout=self.timeouts.as_httpx(), **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if stage != "submit":
                err.may_have_been_billed = False
            raise err from None

    def _submit(self, request: ImageRequest) -> Pending:
        body = build_request(request, self.options)  # refuses unknown sizes before uploading
        ids = [self._upload(reference) for reference in request.references]
        if ids:
            strength = str(self.options.get("reference_strength") or "MID").upper()
            body["parameters"]["guidances"] = {
                "image_reference": [
                    {"image": {"id": i, "type": "UPLOADED"}, "strength": strength} for i in ids
                ]
            }
        response = self._call("POST", f"{self.base_url}/v2/generations", stage="submit", json=body)
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        return self._accepted(json_body(response), response.status_code)

    def _accepted(self, answer: Any, http_status: int) -> Pending:
        job = None
        if isinstance(answer, dict):
            job = answer.get("generate") or answer.get("sdGenerationJob")
        if not isinstance(job, dict) or not job.get("generationId"):
            raise corrupt(f"answer names no generation: {excerpt(repr(answer), 120)}", http_status)
        generation_id = str(job["generationId"])
        urls = {"get": f"{self.base_url}/v1/generations/{generation_id}"}
        if job.get("apiCreditCost") is not None:
            urls["credits"] = str(job["apiCreditCost"])
        return Pending(UpstreamJob(generation_id, urls))

    def _upload(self, reference: Reference) -> str:
        """Upload one reference (presigned form post) and return its init-image id."""
        extension = EXTENSIONS.get(reference.mime_type)
        if extension is None:
            raise ProviderError(
                ErrorKind.PERMANENT,
                _("Leonardo takes PNG, JPEG or WebP reference images, not %(type)s.")
                % {"type": reference.mime_type},
            )
        response = self._call(
            "POST", f"{self.base_url}/v1/init-image", stage="upload", json={"extension": extension}
        )
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers, "upload")
        target = upload_target(json_body(response), response.status_code)
        url, fields, image_id = target
        if not (url.startswith("https://") or same_origin(url, self.base_url)):
            raise corrupt(f"refused to upload a reference to {url.split('?')[0]!r}", None)
        try:
            posted = self.client.post(
                url,
                data=fields,
                files={"file": (f"reference.{extension}", reference.data, reference.mime_type)},
                timeout=self.timeouts.as_httpx(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)
            err.may_have_been_billed = False  # nothing is made before the generation
            raise err from None
        if not posted.is_success:
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("A reference image could not be uploaded to the provider."),
                detail=f"upload target answered HTTP {posted.status_code}",
                http_status=posted.status_code,
            )
        return image_id

    def _answer(self, job: UpstreamJob, answer: Any, http_status: int) -> Pending | ImageResult:
        generation = answer.get("generations_by_pk") if isinstance(answer, dict) else None
        if generation is None and isinstance(answer, dict) and "generations_by_pk" in answer:
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider lost track of the request."),
                detail=f"generation {job.id} not found",
                http_status=http_status,
                may_have_been_billed=True,
            )
        if not isinstance(generation, dict):
            raise corrupt(f"answer is not a generation: {excerpt(repr(answer), 120)}", http_status)
        status = str(generation.get("status") or "").upper()
        if status not in STATUSES:
            raise corrupt(f"unknown generation status {excerpt(repr(status), 60)}", http_status)
        if status == "PENDING":
            return Pending(job, started=True)
        if status == "FAILED":
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider failed to make the image."),
                detail=f"generation {job.id} FAILED",
                http_status=http_status,
                may_have_been_billed=True,  # Leonardo does not say whether it refunds
            )
        return self._result(job, generation, http_status)

    def _result(self, job: UpstreamJob, generation: dict, http_status: int) -> ImageResult:
        usage = Usage()
        images = [i for i in generation.get("generated_images") or [] if isinstance(i, dict)]
        if any(image.get("nsfw") is True for image in images):
            raise ProviderError(
                ErrorKind.BLOCKED,
                str(BLOCKED_MESSAGE),
                detail=f"generation {job.id}: an image was flagged nsfw",
                http_status=http_status,
                may_have_been_billed=True,
                usage=usage,
            )
        urls = [str(i["url"]) for i in images if isinstance(i.get("url"), str) and i["url"]]
        fetch = origin_fetcher(
            self.base_url, self.client, self._headers, timeout=self.timeouts.read
        )
        made = images_at(
            urls,
            fetch,
            usage,
            http_status,
            none_detail=f"generation {job.id} COMPLETE without images",
        )
        extra: dict[str, Any] = {}
        if "credits" in job.urls:
            extra["credits"] = job.urls["credits"]
        return ImageResult(
            images=made,
            usage=usage,
            model_version=str(generation.get("modelId") or ""),
            response_id=job.id,
            http_status=http_status,
            extra=extra,
        )


# --- the request --------------------------------------------------------------------


def allowed_size(
    model: str, aspect_ratio: str, image_size: str | None, options: Mapping
) -> tuple[int, int] | None:
    """The width and height Leonardo makes for this ratio and size (None: no such pair)."""
    tables = options.get("sizes") if isinstance(options.get("sizes"), dict) else {}
    table = tables.get(model) or DEFAULT_SIZES.get(model) or {}
    pair = (table.get(aspect_ratio) or {}).get(image_size or "1K")
    if not (isinstance(pair, list | tuple) and len(pair) == 2):
        return None
    width, height = as_int(pair[0]), as_int(pair[1])
    return (width, height) if width and height else None


def build_request(request: ImageRequest, options: Mapping) -> dict[str, Any]:
    """The create body of one generation; REFUSED when no allowed pair fits."""
    model = request.upstream_model.strip()
    size = allowed_size(model, request.aspect_ratio, request.image_size, options)
    if size is None:
        raise ProviderError(
            ErrorKind.REFUSED,
            _(
                "This provider makes no %(ratio)s image at %(size)s with %(model)s (only the "
                "width and height pairs it lists are made as asked)."
            )
            % {"ratio": request.aspect_ratio, "size": request.image_size or "1K", "model": model},
            detail=f"no allowed width/height pair for {model} {request.aspect_ratio} "
            f"{request.image_size or '1K'}",
        )
    parameters: dict[str, Any] = {
        "prompt": request.prompt,
        "width": size[0],
        "height": size[1],
        "quantity": 1,
        "prompt_enhance": "OFF",
    }
    style_ids = options.get("style_ids")
    if isinstance(style_ids, list) and style_ids:
        parameters["style_ids"] = [str(s) for s in style_ids]
    return {"model": model, "parameters": parameters, "public": False}


def upload_target(answer: Any, http_status: int) -> tuple[str, dict[str, str], str]:
    """(url, form fields, init-image id) of an init-image answer."""
    node = answer.get("uploadInitImage") if isinstance(answer, dict) else None
    if not isinstance(node, dict) or not node.get("id") or not node.get("url"):
        raise corrupt(
            f"init-image answer without a target: {excerpt(repr(answer), 120)}", http_status
        )
    fields = node.get("fields") or "{}"
    try:
        parsed = json.loads(fields) if isinstance(fields, str) else fields
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise corrupt("init-image answer with unreadable fields", http_status)
    return str(node["url"]), {str(k): str(v) for k, v in parsed.items()}, str(node["id"])


# --- anything but a 2xx -----------------------------------------------------------------


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None, stage: str = "submit"
) -> ProviderError:
    """Classify an error answer (``stage``: submit, upload, poll or account)."""
    said = _said(body) or excerpt(text_of(body), 200) or "(empty body)"
    lowered = said.lower()
    detail = f"HTTP {status}: {said}"

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status == 402 or any(mark in lowered for mark in NO_CREDIT_MARKS):
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status in (401, 403) or "invalid-jwt" in lowered or "api key" in lowered:
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status == 429:
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=retry_after_header(headers),
        )
    if status in (400, 422) and any(mark in lowered for mark in BLOCK_MARKS):
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if stage == "submit" and (status == 404 or any(mark in lowered for mark in MODEL_MARKS)):
        return error_of(
            ErrorKind.MODEL_GONE,
            _("The provider does not serve this model: %(said)s") % {"said": said},
        )
    if status == 404:
        return error_of(
            ErrorKind.TRANSIENT,
            _("The provider lost track of the request."),
            may_have_been_billed=stage == "poll",
        )
    if (err := server_side(status, error_of, may_have_been_billed=stage == "submit")) is not None:
        return err
    return error_of(
        ErrorKind.PERMANENT, _("The provider rejected the request: %(said)s") % {"said": said}
    )


def _said(body: bytes | str) -> str:
    data = loads_or_none(body)
    if not isinstance(data, dict):
        return ""
    said = data.get("error") or data.get("message") or ""
    if isinstance(said, dict):
        said = said.get("message") or ""
    return clean_text(str(said))
