"""A loopback HTTP double of the three Azure services the project uses, driven by the real SDKs.

One `ThreadingHTTPServer` on 127.0.0.1 (ephemeral port) answers, on the wire formats verified for
openai 3.54 / azure-search-documents 12.0.0 / azure-ai-contentsafety 1.0.0 (DESIGN section 4):

- Azure OpenAI: `POST /openai/deployments/{d}/chat/completions?api-version=...` (header `api-key`),
  and an OpenAI-compatible `POST /v1/chat/completions` (header `Authorization: Bearer`). It writes
  a plausible email as JSON from the documents in the prompt: sentences quoted from them, the
  first document's URL, the ids it quoted as citations, so the project's screen passes it.
- Azure AI Search (api-version 2026-04-01, header `api-key`): `PUT /indexes('{name}')`,
  `GET /indexes('{name}')`, `POST /indexes('{name}')/docs/search.index`,
  `POST /indexes('{name}')/docs/search.post.search`, `GET /indexes('{name}')/docs/$count`.
  Ranking is BM25 (as Azure's), the `$filter` accepts `search.in(...)` and `eq`/`or`, and only
  filterable fields may be filtered on.
- Azure AI Content Safety (api-version 2023-10-01, header `Ocp-Apim-Subscription-Key`):
  `POST /contentsafety/text:analyze` and the text blocklist API the SDK's `BlocklistClient`
  calls: `PATCH|GET|DELETE /contentsafety/text/blocklists/{name}`, `GET .../text/blocklists`,
  `POST .../{name}:addOrUpdateBlocklistItems`, `POST .../{name}:removeBlocklistItems`,
  `GET .../{name}/blocklistItems[/{id}]`. Categories come back in a non-canonical order, so a
  client that reads them by position instead of by name gets them wrong.

Every request is recorded (method, path, query, headers, body, status, injected fault), and faults
are injected on demand: 429 with or without `Retry-After`/`retry-after-ms`, 500/503, latency,
timeouts, dropped connections, malformed JSON, content-filter refusals (HTTP 400
`content_filter` or `finish_reason: content_filter`), a reply that is not JSON, and unsafe
verdicts. Probabilistic faults are deterministic: each draw is seeded by the request itself and
how many times it has been seen, so thread scheduling does not change which attempt fails.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from personalization_assets.backends.local_safety import classify_text
from personalization_assets.backends.local_search import BM25Index
from personalization_assets.safety.policy import CATEGORIES

OPENAI = "openai"
SEARCH = "search"
SAFETY = "safety"
SEARCH_API_VERSION = "2026-04-01"
SAFETY_API_VERSION = "2023-10-01"
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
# Deliberately not CATEGORIES' order: a client must read categories by name.
RESPONSE_CATEGORY_ORDER = ("Violence", "Sexual", "Hate", "SelfHarm")
FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "latency", "timeout", "drop", "malformed", "content-filter", "content-filter-finish",
     "not-json", "unsafe", "401-echo"}
)
# Kinds that only make sense on some endpoints; elsewhere they are skipped.
_CHAT_ONLY = {"content-filter", "content-filter-finish", "not-json"}
_ANALYZE_ONLY = {"unsafe"}


@dataclass(frozen=True)
class Recorded:
    """One request as the double received it, and what it answered."""

    service: str
    operation: str
    method: str
    path: str  # decoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int
    fault: str | None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def transcript(self) -> str:
        """Everything that crossed the wire from the client: request line, query, headers, body."""
        query = "&".join(f"{k}={v}" for k, values in self.query.items() for v in values)
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{query}\n{headers}\n\n{self.text}"


@dataclass
class Fault:
    """Inject `kind` into matching requests: with probability `rate`, at most `times` times.

    `service` limits it to one service (openai, search, safety), `match` to requests whose
    operation, path or body contains the text. For 429: `retry_after` (seconds, the
    `Retry-After` header, fractions allowed) and/or `retry_after_ms` (the `retry-after-ms`
    header); neither means a bare 429. `seconds` is the delay of `latency` and `timeout`.
    `category`/`severity` shape an `unsafe` verdict.
    """

    kind: str
    service: str | None = None
    rate: float = 1.0
    times: int | None = None
    match: str | None = None
    seconds: float = 0.0
    retry_after: float | None = None
    retry_after_ms: int | None = None
    category: str = "Violence"
    severity: int = 6
    injected: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")


@dataclass
class _Index:
    definition: dict[str, Any]
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key_field(self) -> str:
        return next(f["name"] for f in self.definition["fields"] if f.get("key"))

    def is_filterable(self, name: str) -> bool:
        return any(f["name"] == name and f.get("filterable") for f in self.definition["fields"])


class _Reply(Exception):
    """Raised inside a route to answer with an error status."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


class AzureDouble:
    """The double. `start()` binds 127.0.0.1 on a free port; `stop()` shuts it down."""

    def __init__(
        self,
        *,
        openai_key: str = "double-openai-key",
        search_key: str = "double-search-key",
        safety_key: str = "double-safety-key",
        compatible_key: str | None = None,
        model: str = DEFAULT_MODEL,
        latency: float = 0.0,
        seed: int = 0,
    ):
        self.keys = {OPENAI: openai_key, SEARCH: search_key, SAFETY: safety_key}
        self.compatible_key = compatible_key
        self.model = model
        self.latency = latency
        self.seed = seed
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.indexes: dict[str, _Index] = {}
        self.blocklists: dict[str, dict[str, Any]] = {}
        self._seen: Counter[str] = Counter()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> AzureDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AzureDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the double is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- faults and records

    def inject(self, kind: str, **options: Any) -> Fault:
        fault = Fault(kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_records(self) -> None:
        with self._lock:
            self.requests.clear()

    def recorded(self, service: str | None = None, operation: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r for r in self.requests
                if (service is None or r.service == service) and (operation is None or r.operation == operation)
            ]

    def _choose_faults(self, service: str, operation: str, method: str, path: str, body: bytes) -> tuple[Fault | None, float]:
        """The failure to inject (if any) and the extra latency, for this request."""
        key = f"{service}|{method}|{path}|{hashlib.sha256(body).hexdigest()}"
        with self._lock:
            occurrence = self._seen[key]
            self._seen[key] += 1
            haystack = f"{operation}\n{path}\n{body.decode('utf-8', errors='replace')}"
            delay, chosen, cumulative = 0.0, None, 0.0
            draw = random.Random(f"{self.seed}|{key}|{occurrence}").random()
            for position, fault in enumerate(self.faults):
                if fault.service not in (None, service) or (fault.match and fault.match not in haystack):
                    continue
                if (fault.kind in _CHAT_ONLY and operation != "chat") or (fault.kind in _ANALYZE_ONLY and operation != "analyze"):
                    continue
                if fault.times is not None and fault.injected >= fault.times:
                    continue
                if fault.kind == "latency":  # independent of the failure draw
                    if random.Random(f"{self.seed}|latency|{position}|{key}|{occurrence}").random() < fault.rate:
                        fault.injected += 1
                        delay += fault.seconds
                    continue
                cumulative += fault.rate
                if chosen is None and draw < cumulative:
                    fault.injected += 1
                    chosen = fault
        return chosen, delay

    # ---------------------------------------------------------------- dispatch

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (e.g. one a killed client left in flight)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._handle(handler)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        service, operation, route = self._route(handler.command, path)
        try:
            if route is not None:
                self._authorize(service, path, headers)  # a refused request draws no fault
        except _Reply as refused:
            self._record(service, operation, handler.command, path, query, headers, body, refused.status, None)
            handler.send(refused.status, refused.body, refused.headers)
            return
        fault, delay = self._choose_faults(service, operation, handler.command, path, body) if route else (None, 0.0)

        status, payload, extra_headers, fault_name = 404, {"error": {"code": "NotFound", "message": f"no route {path}"}}, {}, None
        raw: bytes | None = None
        if self.latency or delay:
            time.sleep(self.latency + delay)
        if fault is not None:
            fault_name = fault.kind
        try:
            if route is None:
                raise _Reply(404, {"error": {"code": "NotFound", "message": f"no route for {handler.command} {path}"}})
            if fault is not None and fault.kind == "timeout":
                time.sleep(fault.seconds or 5.0)
                raise _Reply(504, {"error": {"code": "Timeout", "message": "the double held this request past the client's timeout"}})
            if fault is not None and fault.kind == "drop":
                self._record(service, operation, handler.command, path, query, headers, body, 0, fault_name)
                handler.close_connection = True
                return
            if fault is not None and fault.kind in {"429", "500", "502", "503"}:
                raise self._fault_reply(fault)
            if fault is not None and fault.kind == "content-filter":
                raise _Reply(400, _content_filter_error())
            if fault is not None and fault.kind == "401-echo":  # a server that quotes the key it refused
                sent = headers.get("api-key") or headers.get("ocp-apim-subscription-key") or headers.get("authorization", "")
                raise _Reply(401, {"error": {"code": "invalid_api_key", "message": f"Incorrect API key provided: {sent}. "
                                             f"Masked: {sent[:10]}****{sent[-4:]}"}})
            status, payload = route(path=path, query=query, body=body, headers=headers, fault=fault)
            if fault is not None and fault.kind == "malformed":  # the answer's body cut in half
                if status == 204:
                    fault_name = None  # no body to break: nothing was injected
                else:
                    text = json.dumps(payload) if not isinstance(payload, bytes) else '{"value": ' + payload.decode()
                    raw = text.encode()[: max(len(text) // 2, 5)]
        except _Reply as reply:
            status, payload, extra_headers = reply.status, reply.body, reply.headers
        self._record(service, operation, handler.command, path, query, headers, body, status, fault_name)
        handler.send(status, payload if raw is None else raw, extra_headers)

    def _record(self, service, operation, method, path, query, headers, body, status, fault) -> None:
        with self._lock:
            self.requests.append(Recorded(service, operation, method, path, query, headers, body, status, fault))

    @staticmethod
    def _fault_reply(fault: Fault) -> _Reply:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        status = int(fault.kind)
        messages = {429: ("429", "Rate limit is exceeded. Try again later."), 500: ("InternalServerError", "injected"),
                    502: ("BadGateway", "injected"), 503: ("ServiceUnavailable", "injected")}
        code, message = messages[status]
        return _Reply(status, {"error": {"code": code, "message": message}}, headers)

    def _authorize(self, service: str, path: str, headers: dict[str, str]) -> None:
        if service == OPENAI and path.startswith("/v1/"):
            if self.compatible_key is not None and headers.get("authorization") != f"Bearer {self.compatible_key}":
                raise _Reply(401, {"error": {"code": "invalid_api_key", "message": "Incorrect API key provided."}})
            return
        header = {OPENAI: "api-key", SEARCH: "api-key", SAFETY: "ocp-apim-subscription-key"}[service]
        if headers.get(header) != self.keys[service]:
            raise _Reply(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}})

    _INDEX = re.compile(r"^/indexes\('([^']+)'\)(.*)$")
    _BLOCKLIST = re.compile(r"^/contentsafety/text/blocklists/([^/:]+)(.*)$")

    def _route(self, method: str, path: str):
        if path.startswith("/openai/deployments/") and path.endswith("/chat/completions") and method == "POST":
            return OPENAI, "chat", self._chat
        if path == "/v1/chat/completions" and method == "POST":
            return OPENAI, "chat", self._chat
        if match := self._INDEX.match(path):
            rest = match.group(2)
            table = {
                ("PUT", ""): ("index_put", self._index_put),
                ("GET", ""): ("index_get", self._index_get),
                ("POST", "/docs/search.index"): ("index_documents", self._index_documents),
                ("POST", "/docs/search.post.search"): ("search", self._search),
                ("GET", "/docs/$count"): ("count", self._count),
            }
            if (method, rest) in table:
                operation, route = table[(method, rest)]
                return SEARCH, operation, route
            return SEARCH, "unknown", None
        if path == "/contentsafety/text:analyze" and method == "POST":
            return SAFETY, "analyze", self._analyze
        if path == "/contentsafety/text/blocklists" and method == "GET":
            return SAFETY, "blocklist_list", self._blocklists_list
        if match := self._BLOCKLIST.match(path):
            rest = match.group(2)
            table = {
                ("PATCH", ""): ("blocklist_upsert", self._blocklist_upsert),
                ("GET", ""): ("blocklist_get", self._blocklist_get),
                ("DELETE", ""): ("blocklist_delete", self._blocklist_delete),
                ("POST", ":addOrUpdateBlocklistItems"): ("blocklist_add", self._blocklist_add),
                ("POST", ":removeBlocklistItems"): ("blocklist_remove", self._blocklist_remove),
                ("GET", "/blocklistItems"): ("blocklist_items", self._blocklist_items),
            }
            if (method, rest) in table:
                operation, route = table[(method, rest)]
                return SAFETY, operation, route
            if method == "GET" and rest.startswith("/blocklistItems/"):
                return SAFETY, "blocklist_item", self._blocklist_item
            return SAFETY, "unknown", None
        service = OPENAI if path.startswith(("/openai", "/v1")) else SAFETY if path.startswith("/contentsafety") else SEARCH
        return service, "unknown", None

    # ---------------------------------------------------------------- Azure OpenAI

    def _chat(self, *, path, query, body, headers, fault):
        if path.startswith("/openai/") and not query.get("api-version"):
            raise _Reply(404, {"error": {"code": "404", "message": "Resource not found"}})
        try:
            request = json.loads(body)
        except ValueError:
            raise _Reply(400, {"error": {"code": "invalid_request_error", "message": "body is not JSON"}}) from None
        messages = request.get("messages") or []
        if request.get("response_format", {}).get("type") == "json_object" and not any(
            "json" in str(m.get("content", "")).lower() for m in messages
        ):
            raise _Reply(400, {"error": {"code": "invalid_request_error",
                                         "message": "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."}})
        email = compose_email(messages)
        content: str | None = json.dumps(email)
        finish = "stop"
        if fault is not None and fault.kind == "content-filter-finish":
            content, finish = None, "content_filter"
        elif fault is not None and fault.kind == "not-json":
            content = "Sure! Here is your email. Subject: " + email["subject"]
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        completion_tokens = len(content or "") // 4
        model = self.model if path.startswith("/openai/") else str(request.get("model", self.model))
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content},
                         "content_filter_results": {}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # ---------------------------------------------------------------- Azure AI Search

    def _search_version(self, query) -> None:
        if query.get("api-version") != [SEARCH_API_VERSION]:
            raise _Reply(400, {"error": {"code": "InvalidApiVersion", "message": f"api-version {query.get('api-version')} not supported"}})

    def _index_named(self, path: str) -> tuple[str, _Index]:
        name = self._INDEX.match(path).group(1)
        with self._lock:
            index = self.indexes.get(name)
        if index is None:
            raise _Reply(404, {"error": {"code": "ResourceNotFound", "message": f"The index '{name}' was not found."}})
        return name, index

    def _index_put(self, *, path, query, body, headers, fault):
        self._search_version(query)
        name = self._INDEX.match(path).group(1)
        definition = json.loads(body)
        fields = definition.get("fields") or []
        if definition.get("name") != name or sum(bool(f.get("key")) for f in fields) != 1:
            raise _Reply(400, {"error": {"code": "InvalidRequestParameter", "message": "an index needs its name and exactly one key field"}})
        with self._lock:
            existing = self.indexes.get(name)
            if existing is None:
                self.indexes[name] = _Index(definition)
                status = 201
            else:
                existing.definition = definition
                status = 200
        return status, {**definition, "@odata.etag": f'"{uuid.uuid4().hex[:8]}"'}

    def _index_get(self, *, path, query, body, headers, fault):
        self._search_version(query)
        _, index = self._index_named(path)
        return 200, index.definition

    def _index_documents(self, *, path, query, body, headers, fault):
        self._search_version(query)
        _, index = self._index_named(path)
        key_field = index.key_field
        results = []
        with self._lock:
            for action in json.loads(body)["value"]:
                kind = action.get("@search.action", "upload")
                document = {k: v for k, v in action.items() if k != "@search.action"}
                key = str(document.get(key_field))
                if kind == "delete":
                    existed = index.documents.pop(key, None) is not None
                    results.append({"key": key, "status": True, "errorMessage": None, "statusCode": 200 if existed else 404})
                elif kind == "merge" and key not in index.documents:
                    results.append({"key": key, "status": False, "errorMessage": "Document not found.", "statusCode": 404})
                else:
                    created = key not in index.documents
                    base = index.documents.get(key, {}) if kind in ("merge", "mergeOrUpload") else {}
                    index.documents[key] = {**base, **document}
                    results.append({"key": key, "status": True, "errorMessage": None, "statusCode": 201 if created else 200})
        return 200, {"value": results}

    def _count(self, *, path, query, body, headers, fault):
        self._search_version(query)
        _, index = self._index_named(path)
        return 200, str(len(index.documents)).encode()

    def _search(self, *, path, query, body, headers, fault):
        self._search_version(query)
        _, index = self._index_named(path)
        request = json.loads(body)
        with self._lock:
            documents = [dict(d) for d in index.documents.values()]
        predicate = _parse_filter(request.get("filter"), index)
        text = (request.get("search") or "*").strip()
        key_field = index.key_field
        if not documents:
            scored = []
        elif text == "*":
            scored = [(1.0, d) for d in sorted(documents, key=lambda d: str(d[key_field]))]
        else:  # term statistics over the whole index, as Azure's; the filter only narrows the results
            frame = pd.DataFrame(
                {
                    "document_id": [str(d[key_field]) for d in documents],
                    "title": [str(d.get("title") or "") for d in documents],
                    "keywords": [",".join(d.get("keywords") or []) for d in documents],
                    "content": [str(d.get("content") or "") for d in documents],
                    "audience": [str(d.get("audience") or "") for d in documents],
                }
            )
            scores = BM25Index(frame).scores(text)
            ranked = sorted(zip(scores, documents, strict=True), key=lambda pair: (-pair[0], str(pair[1][key_field])))
            scored = [(float(s), d) for s, d in ranked if s > 0]  # Azure returns matching documents only
        scored = [(score, d) for score, d in scored if predicate(d)]
        skip, top = int(request.get("skip") or 0), int(request.get("top") or 50)
        select = request.get("select")
        if isinstance(select, str):
            select = [s.strip() for s in select.split(",") if s.strip()]
        page = []
        for score, document in scored[skip : skip + top]:
            shown = {k: v for k, v in document.items() if not select or k in select}
            page.append({"@search.score": round(score, 6), **shown})
        return 200, {"value": page}

    # ---------------------------------------------------------------- Azure AI Content Safety

    def _safety_version(self, query) -> None:
        if query.get("api-version") != [SAFETY_API_VERSION]:
            raise _Reply(400, {"error": {"code": "InvalidApiVersion", "message": "unsupported api-version"}})

    def _blocklist_name(self, path: str) -> str:
        return self._BLOCKLIST.match(path).group(1)

    def _existing_blocklist(self, path: str) -> tuple[str, dict[str, Any]]:
        name = self._blocklist_name(path)
        with self._lock:
            blocklist = self.blocklists.get(name)
        if blocklist is None:
            raise _Reply(404, {"error": {"code": "NotFound", "message": f"Blocklist {name} not found."}})
        return name, blocklist

    def _blocklist_upsert(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        name = self._blocklist_name(path)
        if not re.fullmatch(r"[0-9A-Za-z._~-]{1,64}", name):
            raise _Reply(400, {"error": {"code": "InvalidRequestBody", "message": f"invalid blocklist name {name}"}})
        patch = json.loads(body or b"{}")
        with self._lock:
            created = name not in self.blocklists
            blocklist = self.blocklists.setdefault(name, {"description": None, "items": {}})
            if "description" in patch:
                blocklist["description"] = patch["description"]
        return (201 if created else 200), {"blocklistName": name, "description": blocklist["description"]}

    def _blocklist_get(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        name, blocklist = self._existing_blocklist(path)
        return 200, {"blocklistName": name, "description": blocklist["description"]}

    def _blocklist_delete(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        with self._lock:
            self.blocklists.pop(self._blocklist_name(path), None)
        return 204, b""

    def _blocklists_list(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        with self._lock:
            value = [{"blocklistName": n, "description": b["description"]} for n, b in self.blocklists.items()]
        return 200, {"value": value}

    def _blocklist_add(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        _, blocklist = self._existing_blocklist(path)
        items = json.loads(body)["blocklistItems"]
        if not items or len(items) > 100:
            raise _Reply(400, {"error": {"code": "InvalidRequestBody", "message": "1 to 100 blocklist items per request"}})
        answered = []
        with self._lock:
            for item in items:
                text = str(item["text"])
                if not text.strip() or len(text) > 128:
                    raise _Reply(400, {"error": {"code": "InvalidRequestBody", "message": "item text must be 1 to 128 characters"}})
                item_id = item.get("blocklistItemId") or next(
                    (i for i, existing in blocklist["items"].items() if existing["text"] == text), str(uuid.uuid4())
                )
                blocklist["items"][item_id] = {"blocklistItemId": item_id, "description": item.get("description"), "text": text}
                answered.append(blocklist["items"][item_id])
        return 200, {"blocklistItems": answered}

    def _blocklist_remove(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        _, blocklist = self._existing_blocklist(path)
        with self._lock:
            for item_id in json.loads(body)["blocklistItemIds"]:
                blocklist["items"].pop(item_id, None)
        return 204, b""

    def _blocklist_items(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        _, blocklist = self._existing_blocklist(path)
        with self._lock:
            items = list(blocklist["items"].values())
        skip = int((query.get("skip") or ["0"])[0])
        top = int((query.get("top") or query.get("maxpagesize") or ["1000"])[0])
        return 200, {"value": items[skip : skip + top]}

    def _blocklist_item(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        _, blocklist = self._existing_blocklist(path)
        item_id = path.rsplit("/", 1)[1]
        item = blocklist["items"].get(item_id)
        if item is None:
            raise _Reply(404, {"error": {"code": "NotFound", "message": "item not found"}})
        return 200, item

    def _analyze(self, *, path, query, body, headers, fault):
        self._safety_version(query)
        request = json.loads(body)
        text = request.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 10_000:
            raise _Reply(400, {"error": {"code": "InvalidRequestBody", "message": "text must be 1 to 10000 characters"}})
        categories = request.get("categories") or list(CATEGORIES)
        matches = []
        for name in request.get("blocklistNames") or []:
            with self._lock:
                blocklist = self.blocklists.get(name)
                items = list(blocklist["items"].values()) if blocklist else None
            if items is None:
                raise _Reply(404, {"error": {"code": "NotFound", "message": f"Blocklist {name} not found."}})
            for item in items:
                if re.search(rf"(?<!\w){re.escape(item['text'])}(?!\w)", text, re.IGNORECASE):
                    matches.append({"blocklistName": name, "blocklistItemId": item["blocklistItemId"],
                                    "blocklistItemText": item["text"]})
        if matches and request.get("haltOnBlocklistHit"):
            return 200, {"blocklistsMatch": matches, "categoriesAnalysis": []}
        severities = classify_text(text)
        if fault is not None and fault.kind == "unsafe":
            severities[fault.category] = max(severities.get(fault.category, 0), fault.severity)
        analysis = [{"category": c, "severity": severities[c]} for c in RESPONSE_CATEGORY_ORDER if c in categories]
        return 200, {"blocklistsMatch": matches, "categoriesAnalysis": analysis}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    double: AzureDouble

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _dispatch(self) -> None:
        try:
            self.double.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout): nothing to answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        if isinstance(payload, bytes):
            data, content_type = payload, "application/json" if payload[:1] in (b"{", b"[") else "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) if status != 204 else 0))
        self.send_header("x-ms-request-id", uuid.uuid4().hex)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if status != 204:
            self.wfile.write(data)


# -------------------------------------------------------------------- helpers


def _content_filter_error() -> dict[str, Any]:
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "medium"},
                },
            },
        }
    }


_SEARCH_IN = re.compile(r"^search\.in\(\s*(\w+)\s*,\s*'((?:[^']|'')*)'\s*(?:,\s*'([^']*)'\s*)?\)$")
_EQ = re.compile(r"^(\w+)\s+eq\s+'((?:[^']|'')*)'$")


def _parse_filter(expression: str | None, index: _Index):
    """A predicate for the OData subset the project sends: `search.in(...)`, `eq`, `or`."""
    if not expression:
        return lambda document: True
    clauses = []
    for part in re.split(r"\s+or\s+", expression.strip()):
        part = part.strip()
        while part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        if match := _SEARCH_IN.match(part):
            name, values, delimiters = match.group(1), match.group(2).replace("''", "'"), match.group(3) or " ,"
            allowed = {v for v in re.split("[" + re.escape(delimiters) + "]", values) if v}
        elif match := _EQ.match(part):
            name, allowed = match.group(1), {match.group(2).replace("''", "'")}
        else:
            raise _Reply(400, {"error": {"code": "InvalidRequestParameter", "message": f"Invalid expression: {part}"}})
        if not index.is_filterable(name):
            raise _Reply(400, {"error": {"code": "InvalidRequestParameter",
                                         "message": f"Invalid expression: '{name}' is not a filterable field."}})
        clauses.append((name, allowed))
    return lambda document: any(str(document.get(name)) in allowed for name, allowed in clauses)


_DOCUMENT = re.compile(r'<document id="([^"]+)" title="([^"]*)" url="([^"]*)">\n(.*?)\n</document>', re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_INSTRUCTION = re.compile(r"\b(ignore|disregard|instructions?|system prompt|as an ai)\b", re.IGNORECASE)
_TONES = {
    "urgent": ("Here is what is worth a look right now.", "Shop now"),
    "informational": ("Here are the details worth knowing.", "Read the details"),
    "friendly": ("We thought you would enjoy this.", "Take a look"),
}
_DEFAULT_TONE = ("Here is an update from us.", "Learn more")
_DANGLING = frozenset("a an and at by for from in into of on or our the to with your".split())


def _subject(title: str, limit: int = 60) -> str:
    words = " ".join(title.split()).split(" ")
    while words and (len(" ".join(words)) > limit or words[-1].lower().strip(":;,-") in _DANGLING):
        words.pop()
    return " ".join(words).rstrip(" :;,-")


def compose_email(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A plausible answer to the project's prompt: grounded in the prompt's documents only.

    Reads the first system and user messages (a repair conversation adds later turns, answered
    the same way): the company name, the tone, the body bounds and the documents. Quotes whole
    sentences of the first two documents, links the first one's URL and cites what it quoted.
    """
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    found = re.search(r"marketing emails for (.+?)\.\s", system)
    company = found.group(1) if found else "Our company"
    tone = (re.search(r"(?m)^Tone: (\S+)", user) or [None, "control"])[1]
    bounds = re.search(r"plain text of (\d+) to (\d+)\s+characters", user)
    body_min, body_max = (int(bounds.group(1)), int(bounds.group(2))) if bounds else (200, 1200)
    documents = [(i, t, u, html.unescape(c)) for i, t, u, c in _DOCUMENT.findall(user)]
    opener, cta = _TONES.get(tone, _DEFAULT_TONE)
    if not documents:
        return {"subject": "An update from us", "body": f"Hi {{{{first_name}}}},\n\n{opener}\n\nThe {company} team",
                "cta": cta, "citations": []}
    first_id, first_title, first_url, _ = documents[0]
    closing = f"{cta}: {first_url}"
    signoff = f"The {company} team"
    fixed = len("Hi {{first_name}},") + len(opener) + len(closing) + len(signoff) + 8
    target = min(max(body_min + 40, 0), body_max - 20)
    paragraphs: list[str] = []
    cited: list[str] = []
    used = fixed
    for document_id, _title, _url, content in documents[:2]:
        chosen = []
        for sentence in (s.strip() for s in _SENTENCE_END.split(" ".join(content.split()))):
            if not sentence or _INSTRUCTION.search(sentence) or "http" in sentence or "www." in sentence:
                continue
            if used + len(sentence) + 1 > body_max - 10:
                break
            chosen.append(sentence)
            used += len(sentence) + 1
            if used >= target:
                break
        if chosen:
            paragraphs.append(" ".join(chosen))
            cited.append(document_id)
            used += 2
        if used >= target:
            break
    body = "\n\n".join(["Hi {{first_name}},", opener, *paragraphs, closing, signoff])
    return {"subject": _subject(first_title) or "News from us", "body": body, "cta": cta,
            "citations": cited or [first_id]}
