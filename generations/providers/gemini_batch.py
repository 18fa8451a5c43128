"""Google's Gemini Batch API, for economy batches: many ``generateContent`` requests in
one job, billed at half the price, answered within a day.

Facts used (read 2026-12; the pages win over this summary when they change):

* Create: ``POST /v1beta/models/{model}:batchGenerateContent`` with ``{"batch":
  {"displayName", "inputConfig": {"requests": {"requests": [{"request":
  GenerateContentRequest, "metadata": {"key": …}}]}}}}`` (inline), or ``"inputConfig":
  {"fileName": "files/…"}`` naming a JSONL file of ``{"key", "request"}`` lines. Inline
  "is suitable for smaller batches that keep the total request size under 20MB" (so
  reference images, inline as base64, count); bigger ones go as a file
  (ai.google.dev/gemini-api/docs/batch-api; google-genai ``batches.py``
  ``_BatchJobSource_to_mldev``: ``requests.requests`` / ``fileName``,
  ``_InlinedRequest_to_mldev``: ``request`` + ``metadata``).
* The answer is an operation: ``name`` ``batches/{id}``, ``metadata.state``,
  ``metadata.displayName``, ``metadata.batchStats`` (counts as strings),
  ``metadata.output`` (google-genai's ``_BatchJob_from_mldev`` reads the results there)
  and, once finished, ``done: true`` and ``response`` (``…GenerateContentBatchOutput``)
  with the same results: ``inlinedResponses.inlinedResponses[]`` (each ``response`` or
  ``error``, with the request's ``metadata``) or ``responsesFile`` (``files/…``, a JSONL
  of ``{"key", "response" | "error"}``). A failed job carries ``error`` (google.rpc.Status).
* Look: ``GET /v1beta/batches/{id}``; list: ``GET /v1beta/batches`` (``operations``,
  ``nextPageToken``); cancel: ``POST /v1beta/batches/{id}:cancel`` (google-genai
  ``batches.get/list/cancel``).
* States: ``BATCH_STATE_PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``,
  ``CANCELLED``, ``EXPIRED`` (the SDK renames them ``JOB_STATE_*``,
  ``_transformers.t_job_state``). "The target turnaround time is 24 hours"; a job
  pending or running for more than 48 hours expires with no results to retrieve
  (ai.google.dev/gemini-api/docs/batch-api, "Batch job status" / "Expiration").
* Order: the docs say inline responses come in the order of the requests, but
  google-genai issue #1909 shows them shuffled: results are matched by ``metadata.key``,
  and by position only for inline responses without keys when the counts agree.
* Files: a resumable upload, ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Protocol:
  resumable``, ``X-Goog-Upload-Command: start``, ``X-Goog-Upload-Header-Content-Length``
  and ``-Content-Type`` answers ``x-goog-upload-url``; the bytes go there with
  ``X-Goog-Upload-Command: upload[, finalize]`` and ``X-Goog-Upload-Offset`` (no key:
  the URL is the credential) and the answers say ``x-goog-upload-status: active |
  final``, the final one with ``{"file": {"name": "files/…"}}`` (google-genai
  ``_extra_utils.prepare_resumable_upload``, ``_api_client.upload_file``). A result file
  is read with ``GET /download/v1beta/files/{id}:download?alt=media`` (the REST example
  of the batch docs; google-genai ``files.download`` uses ``/v1beta/files/{id}:download``).
* Price: 50 % of the interactive price (ai.google.dev/gemini-api/docs/pricing, "Batch").

Like the other providers this module knows HTTP and the wire shapes, no models; each
row's request body is :func:`gemini.build_request_body`'s and each row's answer goes
through :func:`gemini.parse_response`, so a row fails with the usual vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.utils.translation import gettext as _

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    ProviderError,
    Timeouts,
    shared_http_client,
)
from generations.providers.common import as_int, clean_text, json_body, scrubbed, transport_error
from generations.providers.gemini import build_request_body, classify_error, parse_response

PENDING, RUNNING = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"
SUCCEEDED, FAILED = "BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED"
CANCELLED, EXPIRED = "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})
INLINE_LIMIT_BYTES = 20 * 1024 * 1024  # Google's documented inline limit
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # google-genai's chunk size
MAX_LIST_PAGES = 20
# google.rpc.Code → the HTTP status Google's front end answers it with (for the one
# classifier of Gemini errors).
RPC_HTTP = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    13: 500,
    14: 503,
    16: 401,
}


@dataclass(frozen=True)
class BatchRow:
    """One economy row: its key (echoed in the result) and its generateContent request."""

    key: str
    request: ImageRequest


@dataclass(frozen=True)
class BatchStatus:
    """Where a Batch API job is, from one look at its operation."""

    name: str
    state: str
    display_name: str = ""
    done: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    error: str = ""
    inline: list[dict] | None = None  # inlinedResponses, once finished inline
    responses_file: str = ""  # "files/…", once finished from a file

    @property
    def finished(self) -> bool:
        return self.done or self.state in FINAL_STATES


def inline_body(display_name: str, rows: list[BatchRow]) -> dict:
    requests = [
        {"request": build_request_body(row.request), "metadata": {"key": row.key}} for row in rows
    ]
    return {
        "batch": {"displayName": display_name, "inputConfig": {"requests": {"requests": requests}}}
    }


def file_body(display_name: str, file_name: str) -> dict:
    return {"batch": {"displayName": display_name, "inputConfig": {"fileName": file_name}}}


def jsonl(rows: list[BatchRow]) -> bytes:
    """The input file: one ``{"key", "request"}`` object per line."""
    lines = [
        json.dumps({"key": row.key, "request": build_request_body(row.request)}) for row in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def parse_operation(body: Any) -> BatchStatus:
    """A batch operation (create, get or a list entry) → :class:`BatchStatus`."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ProviderError(
            ErrorKind.CORRUPT,
            _("The provider answered with something that is not a batch."),
            detail=f"unexpected batch operation: {str(body)[:200]}",
        )
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    output = meta.get("output") or body.get("response") or {}
    output = output if isinstance(output, dict) else {}
    inline = (output.get("inlinedResponses") or {}).get("inlinedResponses")
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    stats = meta.get("batchStats") if isinstance(meta.get("batchStats"), dict) else {}
    return BatchStatus(
        name=body["name"],
        state=str(meta.get("state") or ""),
        display_name=str(meta.get("displayName") or ""),
        done=bool(body.get("done")),
        stats={str(k): as_int(v) for k, v in stats.items()},
        error=clean_text(str(error.get("message") or ""))[:500],
        inline=[r for r in inline if isinstance(r, dict)] if isinstance(inline, list) else None,
        responses_file=str(output.get("responsesFile") or ""),
    )


def results_by_key(status: BatchStatus, keys: list[str], lines: bytes = b"") -> dict[str, dict]:
    """Each row's result entry (``{"response": …}`` or ``{"error": …}``) by its key, from
    the inline responses or the result file's ``lines``. Keys first; position only for
    inline responses that carry no key at all, when there is one per request."""
    entries: list[dict] = list(status.inline or [])
    if status.responses_file:
        entries = []
        for line in lines.splitlines():
            if line.strip():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a damaged line: its row is reported missing
                if isinstance(entry, dict):
                    entries.append(entry)
    found: dict[str, dict] = {}
    for entry in entries:
        key = entry.get("key") or (entry.get("metadata") or {}).get("key")
        if isinstance(key, str) and key in keys:
            found.setdefault(key, entry)
    if not found and status.inline is not None and len(entries) == len(keys):
        found = dict(zip(keys, entries, strict=True))  # the documented order, no keys
    return found


def row_outcome(entry: dict | None) -> ImageResult | ProviderError:
    """One row's answer as the interactive path would have it: an image, or a
    classified error (a missing answer is transient: the row is refunded)."""
    if entry is None:
        return ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider's batch finished without an answer for this image."),
            detail="no result with this row's key",
        )
    error = entry.get("error") or entry.get("status")
    if isinstance(error, dict) and "response" not in entry:
        return rpc_error(error)
    try:
        return parse_response(entry.get("response"))
    except ProviderError as err:
        return err


def rpc_error(error: dict) -> ProviderError:
    """A per-row ``google.rpc.Status`` → the same error an interactive call would get."""
    code = as_int(error.get("code"))
    http = code if 400 <= code < 600 else RPC_HTTP.get(code, 500)
    envelope = {"error": {**error, "code": http}}
    return classify_error(http, json.dumps(envelope), {})


class GeminiBatchClient:
    """The Batch API and Files API calls of one key (errors scrubbed of the key)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeouts = timeouts or Timeouts()
        self.client = client or shared_http_client()

    def create(
        self, model: str, display_name: str, rows: list[BatchRow], *, inline_limit: int
    ) -> tuple[BatchStatus, str]:
        """Submit the rows as one job: inline while the body stays under
        ``inline_limit`` bytes, else as an uploaded JSONL. Returns the job and the input
        file's name ("" when inline)."""
        body = json.dumps(inline_body(display_name, rows)).encode()
        file_name = ""
        if len(body) > inline_limit:
            file_name = self.upload(jsonl(rows), display_name)
            body = json.dumps(file_body(display_name, file_name)).encode()
        model = model.removeprefix("models/")
        url = f"{self.base_url}/v1beta/models/{model}:batchGenerateContent"
        answer = self._call("POST", url, content=body, json_type=True)
        return parse_operation(answer), file_name

    def get(self, name: str) -> BatchStatus:
        return parse_operation(self._call("GET", f"{self.base_url}/v1beta/{name}"))

    def find(self, display_name: str) -> BatchStatus | None:
        """The job submitted with ``display_name``, if Google has one (every page)."""
        token = None
        for _page in range(MAX_LIST_PAGES):
            params = {"pageSize": 100, **({"pageToken": token} if token else {})}
            body = self._call("GET", f"{self.base_url}/v1beta/batches", params=params)
            for op in body.get("operations") or body.get("batches") or []:
                status = parse_operation(op)
                if status.display_name == display_name:
                    return status
            token = body.get("nextPageToken")
            if not token:
                return None
        return None

    def cancel(self, name: str) -> None:
        self._call("POST", f"{self.base_url}/v1beta/{name}:cancel", content=b"{}", json_type=True)

    def download(self, file_name: str) -> bytes:
        url = f"{self.base_url}/download/v1beta/{file_name}:download"
        return self._request("GET", url, params={"alt": "media"}).content

    def upload(self, data: bytes, display_name: str) -> str:
        """The resumable upload of a JSONL file; its name ("files/…")."""
        start = self._request(
            "POST",
            f"{self.base_url}/upload/v1beta/files",
            content=json.dumps({"file": {"displayName": display_name}}).encode(),
            headers={
                "Content-Type": "application/json",
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(len(data)),
                "X-Goog-Upload-Header-Content-Type": "application/jsonl",
            },
        )
        upload_url = start.headers.get("x-goog-upload-url")
        if not upload_url:
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider did not start the file upload."),
                detail="no x-goog-upload-url in the answer",
            )
        offset, answer = 0, start
        while True:
            chunk = data[offset : offset + UPLOAD_CHUNK_BYTES]
            last = offset + len(chunk) >= len(data)
            headers = {
                "X-Goog-Upload-Command": "upload, finalize" if last else "upload",
                "X-Goog-Upload-Offset": str(offset),
            }
            answer = self._request("POST", upload_url, content=chunk, headers=headers, key=False)
            offset += len(chunk)
            if answer.headers.get("x-goog-upload-status") != "active" or last:
                break
        if answer.headers.get("x-goog-upload-status") != "final":
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider did not finish the file upload."),
                detail=f"x-goog-upload-status: {answer.headers.get('x-goog-upload-status')}",
            )
        name = ((json_body(answer) or {}).get("file") or {}).get("name")
        if not isinstance(name, str) or not name.startswith("files/"):
            raise ProviderError(
                ErrorKind.CORRUPT,
                _("The provider's upload answer names no file."),
                detail=str(name),
            )
        return name

    def _call(self, method: str, url: str, **kwargs) -> dict:
        body = json_body(self._request(method, url, **kwargs))
        return body if isinstance(body, dict) else {}

    def _request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        params: dict | None = None,
        headers: dict | None = None,
        json_type: bool = False,
        key: bool = True,
    ) -> httpx.Response:
        sent = {"accept": "application/json", **(headers or {})}
        if key:
            sent["x-goog-api-key"] = self.api_key
        if json_type:
            sent["Content-Type"] = "application/json"
        try:
            response = self.client.request(
                method,
                url,
                content=content,
                params=params,
                headers=sent,
                timeout=self.timeouts.as_httpx(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise scrubbed(transport_error(exc), self.api_key) from None
        if not response.is_success:
            err = classify_error(response.status_code, response.content, response.headers)
            raise scrubbed(err, self.api_key)
        return response
