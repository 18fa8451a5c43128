"""A Hugging Face Space (a Gradio app) as an image provider: one synchronous call.

Facts relied on (github:gradio-app/gradio at 375335e, 2026-08: gradio/routes.py,
gradio/utils.py, gradio/queueing.py, client/python/gradio_client/client.py; the guide
"Querying Gradio Apps with Curl", guides/09_gradio-clients-and-lite/):

* The app's URL is the Space's own host, ``https://{owner}-{name}.hf.space`` ("❌ Space
  URL: https://huggingface.co/spaces/abidlabs/en2fr ✅ Gradio app URL:
  https://abidlabs-en2fr.hf.space/"; gradio_client takes it from the Hub's
  ``space_info(...).host``). Gradio 5+ serves its API under ``API_PREFIX = "/gradio_api"``
  (gradio/utils.py); Gradio 4 Spaces answer without it (option ``api_prefix: ""``).
* ``POST {app}/gradio_api/call/{api_name}`` with ``{"data": [one value per input]}`` →
  ``{"event_id"}`` (``simple_predict_post``); a full queue answers 503, a validator 422,
  other refusals 400 (``queue_join_helper``'s error map); an api_name the app lacks is an
  unhandled ``FnIndexInferError``, so a 500.
* ``GET {app}/gradio_api/call/{api_name}/{event_id}`` is a server-sent event stream of
  ``event: generating|complete|error|heartbeat`` with ``data:`` the JSON outputs list
  (complete, generating), ``null`` (heartbeat, every 15 s) or, for error, the
  ``error_payload`` ``{"error": message|null, "title", "duration", "visible"}`` (the
  message is hidden, null, unless the app shows errors or raised ``gr.Error``) or a bare
  string (an unexpected error) (``simple_predict_get``).
* Files go up first: ``POST {app}/gradio_api/upload`` multipart, field ``files`` → a list of
  server paths; an argument then is ``{"path": …, "orig_name", "meta": {"_type":
  "gradio.FileData"}}`` (client.py ``_upload_file``). Output files come as FileData with
  ``path`` and ``url``; gradio_client downloads ``{app}/gradio_api/file={path}``
  (``_download_file``).
* A private Space needs ``Authorization: Bearer hf_…`` on every call (the curl guide); a
  public one takes none, and then ZeroGPU counts the caller's IP. The schema of each
  endpoint is at ``GET {app}/gradio_api/info`` (``named_endpoints["/name"]`` with
  ``parameters`` and ``returns``): free, and what Test connection reads.
* ZeroGPU quota errors arrive as error events (``gr.Error`` titled "ZeroGPU quota
  exceeded"), in several wordings seen in public issues: "You have exceeded your GPU quota
  (46s left vs. 60s requested). Sign-up on Hugging Face to get more quotas or retry in
  0:09:48." (levihsu/OOTDiffusion#205), "… (59s left vs. 60s requested). Please retry in
  0:00:56" (zero-gpu-explorers/README discussion 81), "… Signup on Huggingface or try again
  in 2 days." (discussion 98), "(60s requested vs. 56s left). Create a free account to get
  more usage quota." (e2b-dev/open-computer-use#28, no wait named). They are the key's
  (or the IP's) quota: key exhausted, resting until the named wait when there is one.
  Quotas refill continuously ("half of your consumed quotas every 5h", HF staff in
  discussion 81's thread), not at a fixed hour. "No GPU is currently available for you
  after 60s" is capacity (transient); "ZeroGPU illegal duration" is the Space asking more
  than the caller's tier allows (refused).
* A sleeping or building Space answers 503 from Hugging Face's proxy while it starts: a
  transient failure. Gradio reports no usage: Spaces are free to call (mark the routes
  free), or billed by the hour to the Space's owner, which no call reports.

Provider.options, checked before anything is sent (positions count from 0)::

    {"space": "black-forest-labs/FLUX.1-schnell",   # for the admin; not sent
     "api_name": "/infer",
     "arguments": ["", 0, true, 1024, 1024, 4],    # the endpoint's inputs, fixed values
     "prompt": 0, "seed": 1, "width": 3, "height": 4,   # positions this request fills
     "image": null,                                # position of a reference image (FileData)
     "output": 0,                                  # position of the image in the outputs
     "api_prefix": "/gradio_api"}                  # "" for a Gradio 4 Space
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations.failures import ErrorKind
from generations.providers.base import (
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    Reference,
    Usage,
)
from generations.providers.common import (
    auth_headers,
    clean_text,
    corrupt,
    decode_data_uri,
    excerpt,
    fetched,
    json_body,
    misconfigured,
    origin_fetcher,
    pixel_size,
    real_key,
    retry_after_header,
    scrubbed,
    server_side,
    sniffed_image,
    text_of,
    transport_error,
)

API_PREFIX = "/gradio_api"  # gradio/utils.py API_PREFIX (Gradio 5+)
POSITIONS = ("prompt", "seed", "width", "height", "image")
MAX_SEED = 2**31 - 1  # gr.Slider seeds in Spaces' demos top out at np.iinfo(np.int32).max
QUOTA_MARKS = ("exceeded your gpu quota", "zerogpu quota", "gpu quota exceeded")
CAPACITY_MARKS = (
    "no gpu is currently available",
    "queue is full",
    "out of memory",
    "try again later",
    "too busy",
    "timed out",
    "timeout",
)
REFUSED_MARKS = ("illegal duration",)
BLOCK_MARKS = ("nsfw", "safety checker", "unsafe content", "inappropriate", "content policy")
# "retry in 0:09:48", "try again in 0:00:56", "try again in 2 days"
WAIT_CLOCK = re.compile(r"(?:retry|try again) in (\d+):(\d{1,2}):(\d{1,2})", re.IGNORECASE)
WAIT_WORDS = re.compile(
    r"(?:retry|try again) in (\d+(?:\.\d+)?)\s*(second|sec|minute|min|hour|day)s?\b",
    re.IGNORECASE,
)
UNIT_SECONDS = {"sec": 1, "second": 1, "min": 60, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class SpaceCall:
    """The admin's options, checked: which endpoint, its inputs, which positions we fill."""

    api_name: str
    arguments: tuple
    positions: dict[str, int]
    output: int
    prefix: str

    @classmethod
    def of(cls, options: dict) -> SpaceCall:
        api_name = str(options.get("api_name") or "").strip().strip("/")
        if not api_name:
            raise misconfigured(
                _(
                    "The Space provider needs options.api_name: the endpoint, e.g. “/infer” "
                    "(the Space's “Use via API” page lists them)."
                )
            )
        arguments = options.get("arguments", [])
        if not isinstance(arguments, list):
            raise misconfigured(
                _("options.arguments must be the list of the endpoint's inputs, in order.")
            )
        positions = {}
        for name in (*POSITIONS, "output"):
            value = options.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise misconfigured(
                    _("options.%(name)s must be a position (0, 1, …), not %(value)s.")
                    % {"name": name, "value": json.dumps(value)}
                )
            positions[name] = value
        if "prompt" not in positions:
            raise misconfigured(
                _("The Space provider needs options.prompt: the prompt's position.")
            )
        output = positions.pop("output", 0)
        prefix = str(options.get("api_prefix", API_PREFIX)).rstrip("/")
        return cls(api_name, tuple(arguments), positions, output, prefix)

    def data(
        self, request: ImageRequest, image: dict | None, sides: Any = None
    ) -> tuple[list, dict]:
        """The ``data`` list for this request, and the values chosen (seed, size)."""
        size = max([len(self.arguments), *(p + 1 for p in self.positions.values())])
        data = [*self.arguments, *([None] * (size - len(self.arguments)))]
        data[self.positions["prompt"]] = request.prompt
        chosen: dict[str, Any] = {}
        if "width" in self.positions or "height" in self.positions:
            width, height = pixel_size(
                request.aspect_ratio, request.image_size, sides if isinstance(sides, dict) else None
            )
            for name, value in (("width", width), ("height", height)):
                if name in self.positions:
                    data[self.positions[name]] = chosen[name] = value
        if "seed" in self.positions:
            data[self.positions["seed"]] = chosen["seed"] = secrets.randbelow(MAX_SEED)
        if image is not None:
            data[self.positions["image"]] = image
        return data, chosen


class HFSpaceProvider(Provider):
    """One call to one endpoint of one Space (``base_url`` the app's own host)."""

    key_help = gettext_lazy(
        "Hugging Face Space: the base URL is the app's host, https://owner-name.hf.space (the "
        "Space's “Use via API” page shows it). A public Space needs no key: paste “none”. A "
        "private one, or ZeroGPU quota of your account instead of this server's IP, needs a "
        "read token from https://huggingface.co/settings/tokens (hf_…). ZeroGPU quota is per "
        "account, a few minutes of GPU a day (more with PRO); an exhausted key rests until "
        "the wait the Space names. Options name the endpoint and the positions of its "
        "arguments (README, “Hugging Face Spaces”). Test connection reads the Space's "
        "/gradio_api/info (free)."
    )

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None

    def test_connection(self) -> str:
        try:
            call = SpaceCall.of(self.options)
            info = json_body(self._call("GET", f"{call.prefix}/info", stage="check"))
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None
        endpoints = info.get("named_endpoints") if isinstance(info, dict) else None
        endpoint = (endpoints or {}).get(f"/{call.api_name}")
        if not isinstance(endpoint, dict):
            names = ", ".join(sorted(endpoints or {})) or "-"
            raise misconfigured(
                _("The Space answers, but has no endpoint /%(name)s; it has %(names)s.")
                % {"name": call.api_name, "names": names}
            )
        count = len(endpoint.get("parameters") or [])
        highest = max(call.positions.values())
        if count and (highest >= count or len(call.arguments) > count):
            raise misconfigured(
                _("The endpoint /%(name)s takes %(count)s arguments; the options name more.")
                % {"name": call.api_name, "count": count}
            )
        return _("The Space answers; its endpoint /%(name)s takes %(count)s arguments.") % {
            "name": call.api_name,
            "count": count,
        }

    # --- one call ------------------------------------------------------------------------

    def _generate(self, request: ImageRequest) -> ImageResult:
        call = SpaceCall.of(self.options)
        if len(request.references) > (1 if "image" in call.positions else 0):
            raise ProviderError(
                ErrorKind.PERMANENT,
                _("This Space takes %(count)s reference images.")
                % {"count": 1 if "image" in call.positions else 0},
            )
        image = self._upload(call, request.references[0]) if request.references else None
        data, chosen = call.data(request, image, self.options.get("sides"))
        path = f"{call.prefix}/call/{quote(call.api_name)}"
        started = self._call("POST", path, stage="submit", json={"data": data})
        event = json_body(started)
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str) or not event_id:
            raise corrupt(f"no event_id in {excerpt(repr(event), 120)}", started.status_code)
        outputs = self._stream(f"{path}/{event_id}", request)
        return ImageResult(
            images=(self._image(call, outputs),),
            usage=Usage(),  # Gradio reports no usage
            model_version=str(self.options.get("space") or call.api_name),
            response_id=event_id,
            extra=chosen,
        )

    def _call(self, method: str, path: str, *, stage: str, **kwargs) -> httpx.Response:
        headers = {"accept": "application/json", **auth_headers(self.api_key)}
        try:
            response = self.client.request(
                method,
                f"{self.base_url}{path}",
                headers=headers,
                timeout=self.timeouts.as_httpx(),
                **kwargs,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            err.may_have_been_billed = err.may_have_been_billed and stage == "submit"
            raise err from None
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers, stage)
        return response

    def _upload(self, call: SpaceCall, reference: Reference) -> dict:
        name = f"reference.{reference.mime_type.rsplit('/', 1)[-1].replace('jpeg', 'jpg')}"
        files = [("files", (name, reference.data, reference.mime_type))]
        answer = json_body(self._call("POST", f"{call.prefix}/upload", stage="upload", files=files))
        if not isinstance(answer, list) or not answer or not isinstance(answer[0], str):
            raise corrupt(f"upload answered {excerpt(repr(answer), 120)}", 200)
        return {"path": answer[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def _stream(self, path: str, request: ImageRequest) -> list:
        """Read the event stream to its ``complete`` (the outputs) or ``error`` event."""
        limit = self.timeouts.read
        if request.deadline_seconds:
            limit = min(limit, request.deadline_seconds)
        deadline = time.monotonic() + limit
        headers = {"accept": "text/event-stream", **auth_headers(self.api_key)}
        try:
            with self.client.stream(
                "GET", f"{self.base_url}{path}", headers=headers, timeout=self.timeouts.as_httpx()
            ) as response:
                if not response.is_success:
                    response.read()
                    raise classify_error(
                        response.status_code, response.content, response.headers, "stream"
                    )
                for event, data in sse_events(response.iter_lines()):
                    if event == "complete":
                        return complete_outputs(data)
                    if event == "error":
                        raise space_error(data)
                    if time.monotonic() > deadline:
                        raise ProviderError(
                            ErrorKind.SLOW,
                            _("The Space took too long to answer."),
                            detail=f"no complete event within {limit:.0f}s",
                            may_have_been_billed=True,
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_error(exc) from None
        raise ProviderError(
            ErrorKind.TRANSIENT,
            _("The connection to the Space broke off before the image was made."),
            detail="event stream ended without a complete or error event",
            may_have_been_billed=True,
        )

    def _image(self, call: SpaceCall, outputs: list) -> GeneratedImage:
        value = outputs[call.output] if call.output < len(outputs) else None
        where = file_location(value)
        if where is None:
            raise ProviderError(
                ErrorKind.NO_IMAGE,
                _("The Space answered without an image. Rephrasing the prompt may help."),
                detail=f"output {call.output} is {excerpt(repr(value), 120)}",
                may_have_been_billed=True,
            )
        if where.startswith("data:"):
            try:
                return sniffed_image(decode_data_uri(where), Usage(), 200)
            except ValueError as exc:
                raise corrupt(str(exc), 200) from None
        if not where.startswith(("https://", "http://")):
            where = f"{self.base_url}{call.prefix}/file={where}"
        fetch = origin_fetcher(
            self.base_url, self.client, auth_headers(self.api_key), timeout=self.timeouts.read
        )
        return sniffed_image(fetched(where, fetch, Usage(), 200), Usage(), 200)


# --- the event stream --------------------------------------------------------------------


def sse_events(lines) -> Any:
    """(event, data text) pairs of a server-sent event stream (events end at a blank line)."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data or event != "message":
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


def complete_outputs(data: str) -> list:
    try:
        outputs = json.loads(data)
    except ValueError as exc:
        raise corrupt(f"complete event is not JSON: {exc}", 200) from None
    if not isinstance(outputs, list):
        raise corrupt(f"complete event is {excerpt(repr(outputs), 80)}, not a list", 200)
    return outputs


def file_location(value: Any) -> str | None:
    """Where an output's image is: a FileData's url or path, a Gallery's first item, a
    ``{"image": FileData}`` entry, or a string (URL, data URI or server path)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list):
        return next((w for w in map(file_location, value) if w), None)
    if isinstance(value, dict):
        url, path = value.get("url"), value.get("path")
        if isinstance(url, str) and url.startswith(("https://", "http://", "data:")):
            return url
        if isinstance(path, str) and path:
            return path
        return file_location(value.get("image"))
    return None


def space_error(data: str) -> ProviderError:
    """An ``error`` event, classified by what the Space said."""
    try:
        payload = json.loads(data) if data else None
    except ValueError:
        payload = data
    if isinstance(payload, dict):
        title = str(payload.get("title") or "")
        parts = [title if title.lower() != "error" else "", str(payload.get("error") or "")]
        said = clean_text(" ".join(p for p in parts if p))
    else:
        said = clean_text(str(payload or ""))
    detail = f"error event: {said or '(no message: the Space hides its errors)'}"
    lowered = said.lower()
    if any(mark in lowered for mark in QUOTA_MARKS):
        return ProviderError(
            ErrorKind.KEY_EXHAUSTED,
            _("The Hugging Face GPU quota for this key is used up for now."),
            detail=detail,
            retry_after=quota_wait(said),
        )
    if any(mark in lowered for mark in REFUSED_MARKS):
        return ProviderError(
            ErrorKind.REFUSED,
            _("The Space asks for more GPU time than this key may use."),
            detail=detail,
        )
    if any(mark in lowered for mark in BLOCK_MARKS):
        return ProviderError(
            ErrorKind.BLOCKED,
            _("The Space's safety filter refused this prompt. Rephrasing it may help."),
            detail=detail,
        )
    # A hidden error (null), or a bare string (Gradio's UnexpectedErrorMessage): the app
    # itself broke, which a retry may get past; a gr.Error's words are its refusal.
    unexpected = not isinstance(payload, dict)
    if not said or unexpected or any(mark in lowered for mark in CAPACITY_MARKS):
        return ProviderError(
            ErrorKind.TRANSIENT, _("The Space failed to make the image."), detail=detail
        )
    return ProviderError(
        ErrorKind.PERMANENT,
        _("The Space refused the request: %(error)s") % {"error": said},
        detail=detail,
    )


def quota_wait(text: str) -> float | None:
    """Seconds a ZeroGPU quota error says to wait ("retry in 0:09:48"), None if it says none."""
    if match := WAIT_CLOCK.search(text):
        hours, minutes, seconds = (int(part) for part in match.groups())
        return float(hours * 3600 + minutes * 60 + seconds)
    if match := WAIT_WORDS.search(text):
        return float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]
    return None


def classify_error(status: int, body: bytes | str, headers, stage: str) -> ProviderError:
    """Anything but a 2xx from the Space or Hugging Face's proxy in front of it."""
    said = _said(body)
    detail = f"HTTP {status} at {stage}: {said}"

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("Hugging Face refused the token for this Space."))
    if status == 404:
        if stage in ("submit", "check"):
            return error_of(
                ErrorKind.MODEL_GONE,
                _("The Space was not found (renamed, deleted, or private without a token)."),
            )
        return error_of(ErrorKind.TRANSIENT, _("The Space lost track of the request."))
    if status == 429:
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("Hugging Face is receiving too many requests from this key right now."),
            retry_after=retry_after_header(headers),
        )
    if status == 503:
        return error_of(
            ErrorKind.TRANSIENT,
            _("The Space is asleep, starting or full right now."),
            retry_after=retry_after_header(headers),
        )
    if err := server_side(status, error_of, slow=_("The Space took too long to answer.")):
        return err
    return error_of(
        ErrorKind.PERMANENT, _("The Space refused the request: %(error)s") % {"error": said}
    )


def _said(body: bytes | str) -> str:
    text = text_of(body)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("detail") is not None:
        return clean_text(
            json.dumps(data["detail"]) if not isinstance(data["detail"], str) else data["detail"]
        )
    if isinstance(data, dict) and data.get("error"):
        return clean_text(str(data["error"]))
    return excerpt(re.sub(r"<[^>]+>", " ", text), 200) or "(empty body)"
