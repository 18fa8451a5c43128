"""A ComfyUI server running a workflow of the admin's (queue style: submit, poll, cancel).

Facts relied on (github:comfyanonymous/ComfyUI, server.py and script_examples/, read late
2026; the history layout from main.py's ``prompt_worker`` as kept in forks of it):

* ``POST {base}/prompt`` with ``{"prompt": <workflow in API format>, "client_id": …}``
  answers ``{"prompt_id", "number", "node_errors"}``; a workflow that does not validate
  answers 400 ``{"error": {"type", "message", "details", "extra_info"}, "node_errors":
  {node_id: {"errors": [{"message", "details", …}], "class_type"}}}`` (older builds:
  ``"error"`` a plain string). The API format is a flat object of node id →
  ``{"class_type", "inputs"}``, a link being ``[node_id, output_index]``
  (script_examples/websockets_api_example.py sets ``prompt["6"]["inputs"]["text"]`` and
  ``prompt["3"]["inputs"]["seed"]`` exactly so). Every route is also served under ``/api``.
* ``POST {base}/upload/image`` (multipart: ``image`` the file, ``type`` input|temp|output,
  ``subfolder``, ``overwrite``) answers ``{"name", "subfolder", "type"}``; a LoadImage
  node's ``image`` input takes that name (``subfolder/name`` inside a subfolder).
* ``GET {base}/history/{prompt_id}`` answers ``{}`` until the prompt has run, then
  ``{prompt_id: {"prompt", "outputs": {node_id: {"images": [{"filename", "subfolder",
  "type"}]}}, "status": {"status_str": "success"|"error", "completed", "messages":
  [[event, data], …]}, "meta"}}``; the messages hold ``execution_error`` (with
  ``exception_message``, ``exception_type``, ``node_id``, ``node_type``) or
  ``execution_interrupted``. ``GET {base}/queue`` answers ``{"queue_running": [[number,
  prompt_id, prompt, extra_data, outputs], …], "queue_pending": […]}``: what tells a job
  that is waiting from one that is running, or from one a restarted server forgot.
* ``GET {base}/view?filename=&subfolder=&type=`` serves the file.
* Cancel: ``POST {base}/queue {"delete": [prompt_id]}`` drops a pending prompt;
  ``POST {base}/interrupt {"prompt_id": …}`` stops it only if it is the one running (a
  body without ``prompt_id`` interrupts whatever runs, "Global interrupt (no prompt_id
  specified)"; builds before the targeted interrupt ignore the body, so it is sent only
  when ``/queue`` shows this prompt running).
* ``GET {base}/system_stats`` (``system.comfyui_version``, ``devices``) and
  ``GET {base}/object_info/{class}`` (``{}`` for a class the server lacks) are free.
* ComfyUI has no keys. One behind a proxy that wants ``Authorization: Bearer`` gets the
  key; the placeholder ``none`` sends nothing. It renders locally: routes are free (mark
  the route free; a GPU bill, if any, is the admin's to price per image).

Progress is read by polling ``/history``: the ``/ws`` websocket would need a connection
held per job, which the queue protocol avoids.

Provider.options (checked before anything is sent, each problem named)::

    {"workflow": {<API format>},
     "nodes": {"prompt": "6.inputs.text", "width": "5.inputs.width",
               "height": "5.inputs.height", "seed": "3.inputs.seed",
               "image": "10.inputs.image"},
     "output": "9",                 # optional: the node whose images are the result
     "sides": {"1K": 1024, "2K": 2048}, "multiple": 64}   # optional, see pixel_size

Only ``nodes.prompt`` is required. Without width/height the workflow's own size is made
whatever ratio was asked; without ``image`` the route takes no reference image.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

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
    UpstreamJob,
    Usage,
)
from generations.providers.common import (
    DEFAULT_MULTIPLE,
    auth_headers,
    clean_text,
    corrupt,
    excerpt,
    fetched,
    json_body,
    loads_or_none,
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

# Keys that mean "no key": the admin form needs something pasted for a server without keys.

NODE_ROLES = ("prompt", "width", "height", "seed", "image")
MAX_SEED = 2**32 - 1
CLIENT_ID = "nanoweb"
OOM_MARKS = ("out of memory", "outofmemory", "oom")


# --- the admin's options ---------------------------------------------------------------


def node_paths(options: dict) -> tuple[dict, dict[str, tuple[str, str]]]:
    """The workflow and the named inputs (role → (node id, input name)), checked."""
    workflow = options.get("workflow")
    if not isinstance(workflow, dict) or not workflow:
        raise misconfigured(
            _(
                "The ComfyUI provider needs options.workflow: the workflow exported with "
                "“Save (API Format)”."
            )
        )
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise misconfigured(
                _("Node %(node)s of the workflow is not in API format (class_type, inputs).")
                % {"node": node_id}
            )
    named = options.get("nodes")
    if not isinstance(named, dict) or "prompt" not in named:
        raise misconfigured(
            _('The ComfyUI provider needs options.nodes.prompt, e.g. "6.inputs.text".')
        )
    paths: dict[str, tuple[str, str]] = {}
    for role, path in named.items():
        if role not in NODE_ROLES:
            raise misconfigured(
                _("Unknown node role %(role)s in options.nodes; use %(roles)s.")
                % {"role": role, "roles": ", ".join(NODE_ROLES)}
            )
        node_id, marker, name = str(path).partition(".inputs.")
        node = workflow.get(node_id)
        if not marker or not name or node is None:
            raise misconfigured(
                _(
                    "options.nodes.%(role)s is %(path)s: it must be “<node id>.inputs.<input>” "
                    "naming a node of the workflow."
                )
                % {"role": role, "path": path}
            )
        if name not in node["inputs"]:
            raise misconfigured(
                _("Node %(node)s (%(cls)s) has no input %(input)s (options.nodes.%(role)s).")
                % {"node": node_id, "cls": node.get("class_type", "?"), "input": name, "role": role}
            )
        paths[role] = (node_id, name)
    output = options.get("output")
    if output is not None and str(output) not in workflow:
        raise misconfigured(
            _("options.output names node %(node)s, which the workflow does not have.")
            % {"node": output}
        )
    return workflow, paths


def build_prompt(
    options: dict, request: ImageRequest, *, image_name: str | None = None, seed: int = 0
) -> tuple[dict, dict]:
    """The workflow with this request's values set, and what was set (for the result)."""
    workflow, paths = node_paths(options)
    if request.references and "image" not in paths:
        raise ProviderError(
            ErrorKind.PERMANENT, _("This ComfyUI workflow takes no reference image.")
        )
    prompt = copy.deepcopy(workflow)

    def put(role: str, value: Any) -> None:
        node_id, name = paths[role]
        prompt[node_id]["inputs"][name] = value

    put("prompt", request.prompt)
    chosen: dict[str, Any] = {}
    if "width" in paths or "height" in paths:
        width, height = pixel_size(
            request.aspect_ratio,
            request.image_size,
            options.get("sides") if isinstance(options.get("sides"), dict) else None,
            int(options.get("multiple") or DEFAULT_MULTIPLE),
        )
        for role, value in (("width", width), ("height", height)):
            if role in paths:
                put(role, value)
                chosen[role] = value
    if "seed" in paths:
        put("seed", seed)
        chosen["seed"] = seed
    if image_name is not None:
        put("image", image_name)
    return prompt, chosen


# --- the provider ------------------------------------------------------------------------


class ComfyUIProvider(QueueProvider):
    """One workflow run per image (``base_url`` like http://comfyui:8188)."""

    key_help = gettext_lazy(
        "ComfyUI: your own server (base URL like http://comfyui:8188, started with --listen "
        "so that this instance can reach it). It has no keys: paste “none” as the key (a "
        "proxy in front that wants a Bearer token gets the real one). In the options put the "
        "workflow exported with “Save (API Format)” and name its prompt, width, height, seed "
        "and LoadImage inputs (README, “ComfyUI”). Renders are local: mark its routes free. "
        "Test connection asks /system_stats and checks that the server has every node the "
        "workflow uses (free)."
    )

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            image_name = self._upload(request.references[0]) if request.references else None
            seed = secrets.randbelow(MAX_SEED)
            prompt, _chosen = build_prompt(self.options, request, image_name=image_name, seed=seed)
            body = {"prompt": prompt, "client_id": CLIENT_ID}
            response = self._call("POST", "/prompt", stage="submit", json=body)
            answer = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None
        prompt_id = answer.get("prompt_id") if isinstance(answer, dict) else None
        if not isinstance(prompt_id, str) or not prompt_id:
            raise corrupt(f"no prompt_id in {excerpt(repr(answer), 120)}", response.status_code)
        return Pending(UpstreamJob(prompt_id), started=False)

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            entry = self._history(job.id)
            if entry is not None:
                return self._finished(job.id, entry)
            running, pending = self._queue()
            if job.id in running:
                return Pending(job, started=True)
            if job.id in pending:
                return Pending(job, started=False, position=pending.index(job.id))
            entry = self._history(job.id)  # it may have finished between the two calls
            if entry is not None:
                return self._finished(job.id, entry)
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None
        raise ProviderError(
            ErrorKind.TRANSIENT,
            _("The ComfyUI server lost the job (was it restarted?)."),
            detail=f"prompt {job.id} is neither queued, running nor in the history",
        )

    def cancel(self, job: UpstreamJob) -> bool:
        try:
            running, pending = self._queue()
            if job.id in pending:
                self._call("POST", "/queue", stage="cancel", json={"delete": [job.id]})
                return True
            if job.id in running:
                self._call("POST", "/interrupt", stage="cancel", json={"prompt_id": job.id})
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None
        return False

    def test_connection(self) -> str:
        try:
            workflow, _paths = node_paths(self.options)
            stats = json_body(self._call("GET", "/system_stats", stage="check"))
            missing = [
                cls
                for cls in sorted({str(n.get("class_type")) for n in workflow.values()})
                if not json_body(self._call("GET", f"/object_info/{cls}", stage="check"))
            ]
        except ProviderError as err:
            raise scrubbed(err, real_key(self.api_key)) from None
        system = stats.get("system", {}) if isinstance(stats, dict) else {}
        if missing:
            raise ProviderError(
                ErrorKind.REFUSED,
                _("The ComfyUI server answers, but lacks nodes the workflow uses: %(nodes)s.")
                % {"nodes": ", ".join(missing)},
            )
        return _("ComfyUI %(version)s answers, and has every node the workflow uses.") % {
            "version": system.get("comfyui_version") or "?"
        }

    # --- the calls -------------------------------------------------------------------

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
            err.may_have_been_billed = False  # a local render bills nobody
            raise err from None
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers, stage)
        return response

    def _upload(self, reference) -> str:
        extension = reference.mime_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        # Named by content: the same reference uploaded twice is one file on the server.
        name = f"nanoweb-{hashlib.sha256(reference.data).hexdigest()[:24]}.{extension}"
        files = {"image": (name, reference.data, reference.mime_type)}
        data = {"type": "input", "overwrite": "true"}
        answer = json_body(
            self._call("POST", "/upload/image", stage="upload", files=files, data=data)
        )
        if not isinstance(answer, dict) or not answer.get("name"):
            raise corrupt(f"upload answered {excerpt(repr(answer), 120)}", 200)
        subfolder = str(answer.get("subfolder") or "")
        return f"{subfolder}/{answer['name']}" if subfolder else str(answer["name"])

    def _history(self, prompt_id: str) -> dict | None:
        answer = json_body(self._call("GET", f"/history/{prompt_id}", stage="poll"))
        if not isinstance(answer, dict):
            raise corrupt(f"history answered {excerpt(repr(answer), 120)}", 200)
        entry = answer.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def _queue(self) -> tuple[list[str], list[str]]:
        answer = json_body(self._call("GET", "/queue", stage="poll"))
        if not isinstance(answer, dict):
            raise corrupt(f"queue answered {excerpt(repr(answer), 120)}", 200)
        return _queued_ids(answer.get("queue_running")), _queued_ids(answer.get("queue_pending"))

    def _finished(self, prompt_id: str, entry: dict) -> ImageResult:
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        if "execution_interrupted" in _events(status):
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The ComfyUI server stopped the job before it finished."),
                detail=f"prompt {prompt_id} was interrupted on the server: {_events(status)}",
            )
        if status.get("status_str") == "error":
            raise execution_error(prompt_id, status)
        files = output_images(entry.get("outputs"), self.options.get("output"))
        if not files:
            if status and not status.get("completed", True):
                raise ProviderError(
                    ErrorKind.TRANSIENT,
                    _("The ComfyUI server stopped the job before it finished."),
                    detail=f"prompt {prompt_id} did not complete: {_events(status)}",
                )
            raise ProviderError(
                ErrorKind.NO_IMAGE,
                _("The workflow finished without an image (does it end in a SaveImage node?)."),
                detail=f"prompt {prompt_id} has no images in its outputs",
            )
        fetch = origin_fetcher(
            self.base_url, self.client, auth_headers(self.api_key), timeout=self.timeouts.read
        )
        images = []
        for file in files:
            url = f"{self.base_url}/view?{urlencode(file)}"
            images.append(sniffed_image(fetched(url, fetch, Usage(), 200), Usage(), 200))
        return ImageResult(
            images=tuple(images),
            usage=Usage(),  # a local render reports nothing to bill
            response_id=prompt_id,
            extra={"files": [f["filename"] for f in files]},
        )


# --- answers ---------------------------------------------------------------------------


def _queued_ids(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [str(i[1]) for i in items if isinstance(i, list | tuple) and len(i) > 1]


def output_images(outputs: Any, output_node: Any = None) -> list[dict[str, str]]:
    """The image files of a finished prompt (``filename``, ``subfolder``, ``type``): the
    named output node's, else every node's, saved ones ("output") before previews."""
    if not isinstance(outputs, dict):
        return []
    nodes = [outputs.get(str(output_node))] if output_node is not None else outputs.values()
    found = [
        {
            "filename": str(image["filename"]),
            "subfolder": str(image.get("subfolder") or ""),
            "type": str(image.get("type") or "output"),
        }
        for node in nodes
        if isinstance(node, dict) and isinstance(node.get("images"), list)
        for image in node["images"]
        if isinstance(image, dict) and image.get("filename")
    ]
    saved = [f for f in found if f["type"] == "output"]
    return saved or found


def _events(status: dict) -> str:
    messages = status.get("messages") if isinstance(status.get("messages"), list) else []
    return ", ".join(str(m[0]) for m in messages if isinstance(m, list | tuple) and m) or "-"


def execution_error(prompt_id: str, status: dict) -> ProviderError:
    """A prompt that failed while running, by its ``execution_error`` message."""
    messages = status.get("messages") if isinstance(status.get("messages"), list) else []
    data = next(
        (
            m[1]
            for m in messages
            if isinstance(m, list | tuple) and len(m) > 1 and m[0] == "execution_error"
        ),
        {},
    )
    data = data if isinstance(data, dict) else {}
    said = clean_text(str(data.get("exception_message") or "")) or "(no message)"
    kind_of = str(data.get("exception_type") or "")
    node = f"{data.get('node_type', '?')} {data.get('node_id', '?')}"
    detail = f"prompt {prompt_id} failed in {node}: {kind_of}: {said}"
    if any(mark in f"{kind_of} {said}".lower() for mark in OOM_MARKS):
        return ProviderError(
            ErrorKind.TRANSIENT, _("The ComfyUI server ran out of memory."), detail=detail
        )
    return ProviderError(
        ErrorKind.PERMANENT,
        _("The workflow failed on the ComfyUI server (%(node)s): %(error)s")
        % {"node": node, "error": said},
        detail=detail,
    )


def classify_error(status: int, body: bytes | str, headers, stage: str) -> ProviderError:
    """Anything but a 2xx (``stage``: submit, upload, poll, cancel or check)."""
    said = _said(body)
    detail = f"HTTP {status} at {stage}: {said}"

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The server in front of ComfyUI refused the key."))
    if status == 404:
        return error_of(
            ErrorKind.REFUSED, _("No ComfyUI API answers at this address (is the base URL right?).")
        )
    if status == 429:
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The ComfyUI server is receiving too many requests right now."),
            retry_after=retry_after_header(headers),
        )
    slow = _("The ComfyUI server took too long to answer.")
    if (err := server_side(status, error_of, slow=slow)) is not None:
        return err
    if status == 413:
        return error_of(
            ErrorKind.PERMANENT,
            _("The reference image is larger than the ComfyUI server accepts (--max-upload-size)."),
        )
    return error_of(
        ErrorKind.PERMANENT,
        _("The ComfyUI server refused the workflow: %(error)s") % {"error": said},
    )


def _said(body: bytes | str) -> str:
    """The error of a /prompt refusal and its node errors, in one line."""
    data = loads_or_none(body)
    if not isinstance(data, dict):
        return excerpt(text_of(body), 200) or "(empty body)"
    error = data.get("error")
    parts = []
    if isinstance(error, dict):
        parts.append(": ".join(str(error[k]) for k in ("message", "details") if error.get(k)))
    elif error:
        parts.append(str(error))
    nodes = data.get("node_errors") if isinstance(data.get("node_errors"), dict) else {}
    for node_id, info in nodes.items():
        errors = info.get("errors") if isinstance(info, dict) else None
        for item in errors if isinstance(errors, list) else []:
            if isinstance(item, dict):
                text = ": ".join(str(item[k]) for k in ("message", "details") if item.get(k))
                parts.append(f"{info.get('class_type', '?')} {node_id}: {text}")
    return clean_text("; ".join(p for p in parts if p)) or excerpt(text_of(body), 200)
