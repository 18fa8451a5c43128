"""Gemini's Batch API and the Files API it takes input from, as the sandbox speaks them.

Wire shapes as Google's (see generations/providers/gemini_batch.py for the sources):

* ``POST /v1beta/models/{model}:batchGenerateContent`` with inline requests
  (``batch.inputConfig.requests.requests[]``, each ``request`` + ``metadata.key``) or a
  JSONL file (``batch.inputConfig.fileName``) of ``{"key", "request"}`` lines → an
  operation ``batches/{id}`` with ``metadata.state`` ``BATCH_STATE_PENDING``;
* ``GET /v1beta/batches/{id}``, ``GET /v1beta/batches`` (``pageSize``, ``pageToken``;
  ``operations``, ``nextPageToken``), ``POST /v1beta/batches/{id}:cancel``;
* ``POST /upload/v1beta/files`` (``X-Goog-Upload-Command: start`` → header
  ``x-goog-upload-url``; then the bytes there, ``upload[, finalize]`` with
  ``X-Goog-Upload-Offset``, answered ``x-goog-upload-status: active | final``);
* ``GET /download/v1beta/files/{id}:download?alt=media`` (and google-genai's
  ``/v1beta/files/{id}:download``): an input or result file.

A job is pending for a moment, then running, and finishes ``completion_seconds`` after
it was created (default :data:`COMPLETION_SECONDS`). Then every row is answered as
``generateContent`` would answer it (the direct protocol's answer, faults included: a
row whose prompt says ``[sandbox:prompt_block]`` is blocked, ``[sandbox:503]`` gets an
``error``), inline in ``metadata.output`` and ``response`` for inline input, or as a
result file for file input. Inline responses come in request order with their keys.

Markers in any row's prompt change the whole job (tests that read like stories):
``[batch:after=N]`` finishes after N seconds; ``[batch:slow]`` after
:data:`SLOW_SECONDS`; ``[batch:expire]`` ends ``BATCH_STATE_EXPIRED`` (no results, as
Google's after 48 h); ``[batch:fail]`` ends ``BATCH_STATE_FAILED`` with an error.
Cancelling a job that has not finished ends it ``BATCH_STATE_CANCELLED`` with no results.

``counters()`` (in ``/healthz`` as ``batch``) says how many jobs were created, by display
name, how many rows, uploads, cancels and looks.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs

from generations.sandbox import responses
from generations.sandbox.parse import BadRequest, parse_request
from generations.sandbox.state import Reply

COMPLETION_SECONDS = 1.0
PENDING_SECONDS = 0.2
SLOW_SECONDS = 3600.0
LIST_PAGE_SIZE = 10
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
METADATA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
CREATE_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):batchGenerateContent$")
BATCH_PATH = re.compile(r"^/v1beta/batches/(?P<id>[^/:]+)(?P<cancel>:cancel)?$")
DOWNLOAD_PATH = re.compile(r"^(?:/download)?/v1beta/files/(?P<id>[^/:]+):download$")
UPLOAD_PATH = "/upload/v1beta/files"
MARKER = re.compile(r"\[batch:(?P<what>after=(?P<seconds>\d+(?:\.\d+)?)|slow|expire|fail)\]")
# google.rpc.Status codes of the error statuses the direct protocol answers with.
RPC_CODES = {
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}


@dataclass
class Job:
    id: str
    model: str
    display_name: str
    key: str
    rows: list[tuple[str, dict]]  # (key, GenerateContentRequest)
    from_file: bool
    created: float
    finishes: float
    ending: str = "BATCH_STATE_SUCCEEDED"
    state: str = "BATCH_STATE_PENDING"
    results: list[dict] | None = None
    results_file: str = ""
    ended: float | None = None


@dataclass
class Upload:
    display_name: str
    size: int
    data: bytearray = field(default_factory=bytearray)


class BatchAPI:
    """The Batch and Files APIs; rows are answered by the direct protocol's generator."""

    def __init__(self, direct, state, stopping: threading.Event) -> None:
        self.direct = direct
        self.state = state
        self.stopping = stopping
        self.completion_seconds = COMPLETION_SECONDS
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.uploads: dict[str, Upload] = {}
        self.counts: Counter = Counter()
        self.by_display_name: Counter = Counter()
        self._lock = threading.RLock()  # _operation is also called under it

    @staticmethod
    def owns(path: str) -> bool:
        return bool(
            CREATE_PATH.match(path)
            or path == "/v1beta/batches"
            or BATCH_PATH.match(path)
            or path == UPLOAD_PATH
            or DOWNLOAD_PATH.match(path)
        )

    def counters(self) -> dict:
        with self._lock:
            return {**self.counts, "created_by_display_name": dict(self.by_display_name)}

    def handle(self, method: str, path: str, query: str, headers, raw: bytes | None, origin: str):
        key = headers.get("x-goog-api-key") or parse_qs(query).get("key", [""])[0]
        if path == UPLOAD_PATH and "upload_id" in parse_qs(query):
            return self._upload_chunk(parse_qs(query)["upload_id"][0], headers, raw or b"")
        if not key:
            return Reply.of(403, responses.permission_denied_body(), "no_key")
        if key in self.direct.config.invalid_keys:
            return Reply.of(400, responses.api_key_invalid_body(), "api_key_invalid")
        if raw is None:
            message = "Request payload size exceeds the limit: 20971520 bytes."
            return Reply.of(400, responses.invalid_argument_body(message), "too_large")
        if method == "POST" and (create := CREATE_PATH.match(path)):
            return self._create(create["model"], key, raw)
        if method == "POST" and path == UPLOAD_PATH:
            return self._upload_start(headers, raw, origin)
        if method == "GET" and path == "/v1beta/batches":
            return self._list(key, parse_qs(query))
        if (found := BATCH_PATH.match(path)) and method in ("GET", "POST"):
            job = self.jobs.get(found["id"])
            if job is None or job.key != key:
                return Reply.of(404, responses.not_found_body(path), "not_found")
            if found["cancel"] and method == "POST":
                return self._cancel(job)
            if not found["cancel"] and method == "GET":
                self.counts["looks"] += 1
                return Reply.of(200, self._operation(job))
        if method == "GET" and (download := DOWNLOAD_PATH.match(path)):
            found_file = self.files.get(f"files/{download['id']}")
            if found_file is None:
                return Reply.of(404, responses.not_found_body(path), "not_found")
            data, content_type = found_file
            return Reply(200, data, "file", content_type=content_type)
        return Reply.of(404, responses.not_found_body(path), "not_found")

    # --- create, look, cancel -----------------------------------------------------

    def _create(self, model: str, key: str, raw: bytes) -> Reply:
        try:
            batch = json.loads(raw)["batch"]
            config = batch["inputConfig"]
            display_name = str(batch.get("displayName") or "")
            if "fileName" in config:
                rows = self._rows_of_file(config["fileName"])
                from_file = True
            else:
                rows = [
                    (str((r.get("metadata") or {}).get("key") or i), r["request"])
                    for i, r in enumerate(config["requests"]["requests"])
                ]
                from_file = False
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            body = responses.invalid_argument_body(f"Invalid batch request: {exc}")
            return Reply.of(400, body, "invalid_argument")
        if not rows:
            body = responses.invalid_argument_body("A batch needs at least one request.")
            return Reply.of(400, body, "invalid_argument")
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex[:16],
            model=model,
            display_name=display_name,
            key=key,
            rows=rows,
            from_file=from_file,
            created=now,
            finishes=now + self.completion_seconds,
        )
        self._read_markers(job)
        with self._lock:
            self.jobs[job.id] = job
            self.counts["created"] += 1
            self.counts["rows"] += len(rows)
            self.counts["from_file" if from_file else "inline"] += 1
            self.by_display_name[display_name] += 1
        return Reply.of(200, self._operation(job))

    def _rows_of_file(self, name: str) -> list[tuple[str, dict]]:
        found = self.files.get(name)
        if found is None:
            raise KeyError(f"file {name} not found")
        rows = []
        for line in found[0].decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                rows.append((str(entry["key"]), entry["request"]))
        return rows

    @staticmethod
    def _prompt_of(request: dict) -> str:
        parts = [p for c in request.get("contents") or [] for p in c.get("parts") or []]
        return " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))

    def _read_markers(self, job: Job) -> None:
        for _key, request in job.rows:
            for marker in MARKER.finditer(self._prompt_of(request)):
                what = marker["what"]
                if marker["seconds"]:
                    job.finishes = job.created + float(marker["seconds"])
                elif what == "slow":
                    job.finishes = job.created + SLOW_SECONDS
                elif what == "expire":
                    job.ending = "BATCH_STATE_EXPIRED"
                elif what == "fail":
                    job.ending = "BATCH_STATE_FAILED"

    def _cancel(self, job: Job) -> Reply:
        with self._lock:
            self._advance(job)
            if job.ended is None:
                job.state, job.ended = "BATCH_STATE_CANCELLED", time.time()
            self.counts["cancelled"] += 1
        return Reply.of(200, {})

    def _list(self, key: str, query: dict) -> Reply:
        size = int((query.get("pageSize") or [LIST_PAGE_SIZE])[0] or LIST_PAGE_SIZE)
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        mine = [j for j in self.jobs.values() if j.key == key]
        page = mine[start : start + size]
        body: dict = {"operations": [self._operation(j) for j in page]}
        if start + size < len(mine):
            body["nextPageToken"] = str(start + size)
        return Reply.of(200, body)

    def _advance(self, job: Job) -> None:
        """Move the job along its timeline (under the lock)."""
        if job.ended is not None:
            return
        now = time.time()
        if now >= job.finishes:
            job.state, job.ended = job.ending, now
            if job.ending == "BATCH_STATE_SUCCEEDED":
                self._answer_rows(job)
        elif now >= job.created + min(PENDING_SECONDS, job.finishes - job.created):
            job.state = "BATCH_STATE_RUNNING"

    def _operation(self, job: Job) -> dict:
        with self._lock:
            self._advance(job)
        done = job.ended is not None
        total = len(job.rows)
        failed = sum(1 for r in job.results or [] if "error" in r)
        finished = len(job.results or [])
        meta: dict = {
            "@type": METADATA_TYPE,
            "model": f"models/{job.model}",
            "displayName": job.display_name,
            "createTime": _stamp(job.created),
            "updateTime": _stamp(job.ended or time.time()),
            "state": job.state,
            "batchStats": {
                "requestCount": str(total),
                "successfulRequestCount": str(finished - failed),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(0 if done else total),
            },
            "name": f"batches/{job.id}",
        }
        operation: dict = {"name": f"batches/{job.id}", "metadata": meta}
        if done:
            operation["done"] = True
            meta["endTime"] = _stamp(job.ended)
            if job.state == "BATCH_STATE_FAILED":
                operation["error"] = {"code": 13, "message": "The batch failed (sandbox)."}
            elif job.state == "BATCH_STATE_SUCCEEDED":
                output = (
                    {"responsesFile": job.results_file}
                    if job.from_file
                    else {"inlinedResponses": {"inlinedResponses": job.results}}
                )
                meta["output"] = output
                operation["response"] = {"@type": OUTPUT_TYPE, **output}
        return operation

    # --- the rows' answers ----------------------------------------------------------

    def _answer_rows(self, job: Job) -> None:
        results = [self._answer(job, key, request) for key, request in job.rows]
        if job.from_file:
            lines = [
                json.dumps({"key": r["metadata"]["key"], **_without(r, "metadata")})
                for r in results
            ]
            name = f"files/batch-{job.id}-results"
            self.files[name] = (("\n".join(lines) + "\n").encode(), "application/jsonl")
            job.results_file = name
        job.results = results

    def _answer(self, job: Job, key: str, request: dict) -> dict:
        meta = {"key": key}
        try:
            req = parse_request(job.model, json.dumps(request).encode())
            fault = self.state.fault_for(req.prompt, job.key)
        except BadRequest as exc:
            return {"error": {"code": 3, "message": str(exc)}, "metadata": meta}
        reply = self.direct._reply(req, fault, self.state.request_rng())
        if reply.hang:
            return {"error": {"code": 4, "message": "Deadline expired."}, "metadata": meta}
        try:
            body = json.loads(reply.body)
        except ValueError:
            return {"error": {"code": 13, "message": "Internal error."}, "metadata": meta}
        if reply.status == 200:
            return {"response": body, "metadata": meta}
        error = body.get("error") or {}
        status = str(error.get("status") or "INTERNAL")
        code = RPC_CODES.get(status, 13)
        return {"error": {**error, "code": code}, "metadata": meta}

    # --- Files API (resumable upload) -----------------------------------------------

    def _upload_start(self, headers, raw: bytes, origin: str) -> Reply:
        if (headers.get("X-Goog-Upload-Command") or "").lower() != "start":
            body = responses.invalid_argument_body("Only resumable uploads are supported.")
            return Reply.of(400, body, "invalid_argument")
        try:
            meta = json.loads(raw or b"{}").get("file") or {}
            size = int(headers.get("X-Goog-Upload-Header-Content-Length") or 0)
        except (ValueError, AttributeError):
            return Reply.of(400, responses.invalid_argument_body("Bad upload."), "invalid_argument")
        upload_id = uuid.uuid4().hex
        with self._lock:
            self.uploads[upload_id] = Upload(str(meta.get("displayName") or ""), size)
        url = f"{origin}{UPLOAD_PATH}?upload_id={upload_id}&upload_protocol=resumable"
        return Reply(
            200,
            b"",
            "upload_started",
            headers=(("x-goog-upload-url", url), ("x-goog-upload-status", "active")),
        )

    def _upload_chunk(self, upload_id: str, headers, data: bytes) -> Reply:
        upload = self.uploads.get(upload_id)
        command = (headers.get("X-Goog-Upload-Command") or "").lower()
        if upload is None or "upload" not in command:
            return Reply.of(404, responses.not_found_body(UPLOAD_PATH), "not_found")
        if int(headers.get("X-Goog-Upload-Offset") or -1) != len(upload.data):
            body = responses.invalid_argument_body("The upload offset does not match.")
            return Reply.of(400, body, "invalid_argument")
        upload.data += data
        if "finalize" not in command:
            return Reply(200, b"", "uploading", headers=(("x-goog-upload-status", "active"),))
        name = f"files/{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.files[name] = (bytes(upload.data), "application/jsonl")
            self.uploads.pop(upload_id, None)
            self.counts["uploads"] += 1
        file = {
            "name": name,
            "displayName": upload.display_name,
            "mimeType": "application/jsonl",
            "sizeBytes": str(len(upload.data)),
            "state": "ACTIVE",
        }
        return Reply.of(
            200, {"file": file}, "uploaded", headers=(("x-goog-upload-status", "final"),)
        )


def _without(entry: dict, name: str) -> dict:
    return {k: v for k, v in entry.items() if k != name}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
