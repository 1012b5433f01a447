"""Kubernetes access for the agent with the official ``kubernetes`` client: configuration, discovery, listing.

Lists go through ``ApiClient.call_api(..., _preload_content=False)`` and the raw bytes are parsed here: the
client's own deserialisation into model objects costs several times the whole backup. Items are cut out of
the list's JSON as they are, so an item's bytes are the server's own, with ``kind`` and ``apiVersion`` put in
front (list items lack them; a ``GET`` has them). Two ways to cut:

* ``json.JSONDecoder.raw_decode`` parses each item and gives its span: always right, and most of a backup's
  CPU (every ``managedFields`` entry becomes Python objects).
* The light cut, for callers that need only an item's name, namespace and labels: built-in objects are Go
  structs encoded compactly with ``metadata`` first and ``name`` first in it, so every item but the first
  starts right after ``},{"metadata":{"name":"``. Unescaped ``{"`` never occurs inside a JSON string, so each
  occurrence of that text is a real object boundary, but a nested array of such objects (a StatefulSet's
  ``volumeClaimTemplates``, raw JSON in a CRD schema) has them too. Such a page has more boundaries than
  items, so the cut is used only when the number of items is known beforehand and matches: a page with a
  continue token holds exactly ``limit`` items (etcd fills each page before it hands out a token), the last
  page the previous page's ``remainingItemCount``. Anything unexpected (custom resources, whose items start
  with ``apiVersion``; an unknown metadata field before ``labels``; a short page) falls back to the full parse.
"""

from __future__ import annotations

import json
import json.scanner
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kubernetes.client  # type: ignore[import-untyped]
import kubernetes.config  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

DEFAULT_PAGE_SIZE = 500
# (connect, read) seconds for one request; a page of 500 large objects can take a while on a busy apiserver.
REQUEST_TIMEOUT = (10.0, 120.0)
# Enough for any Status message of the apiserver; a non-Status body (a proxy's HTML) is cut there.
MAX_STATUS_MESSAGE = 500
_DECODER = json.JSONDecoder()
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_WS = re.compile(r"[ \t\n\r]*")
_CONTINUE = re.compile(rb'"continue":"([^"]*)"')
_REMAINING = re.compile(rb'"remainingItemCount":(\d+)')
_ITEM_START = b'{"metadata":{"name":"'
_BOUNDARY = b'},{"metadata":{"name":"'
_STRING = rb'"((?:[^"\\]++|\\.)*+)"'
# ObjectMeta's head in Go's field order: name, generateName, namespace, then scalars up to labels, whose keys
# and values the apiserver restricts to characters without braces or escapes. The lookahead demands a field
# that Go writes after labels (or the end of metadata), so an object whose labels are anywhere else, or look
# any other way, does not match and its page is parsed in full: a missed label could be Velero's exclusion.
_LIGHT_HEAD = re.compile(
    rb'\{"metadata":\{"name":'
    + _STRING
    + rb'(?:,"generateName":"(?:[^"\\]++|\\.)*+")?(?:,"namespace":'
    + _STRING
    + rb")?"
    rb'(?:,"(?:selfLink|uid|resourceVersion|creationTimestamp|deletionTimestamp)":"(?:[^"\\]++|\\.)*+"'
    rb'|,"(?:generation|deletionGracePeriodSeconds)":-?\d++)*+'
    rb'(?:,"labels":(\{[^{}\\]*+\}))?'
    rb'(?=\}|,"(?:annotations|ownerReferences|finalizers|clusterName|managedFields)":)'
)


def api_client(kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """An ApiClient from a kubeconfig file, else the in-cluster config (else ``$KUBECONFIG``/``~/.kube/config``)."""
    if kubeconfig:
        return kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)
    # Outside a cluster without --kubeconfig: the standard kubeconfig lookup, as kubectl does.
    return kubernetes.config.new_client_from_config(context=context)


def server_url(api: kubernetes.client.ApiClient) -> str:
    """The apiserver's URL (for messages)."""
    return str(api.configuration.host)


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One listable resource in its group's preferred version."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def group_resource(self) -> str:
        """``configmaps`` or ``deployments.apps``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def api_version(self) -> str:
        """``v1`` or ``apps/v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        """The list URL path, cluster-wide or in one namespace."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            return f"{base}/namespaces/{namespace}/{self.resource}"
        return f"{base}/{self.resource}"


def status_message(exc: ApiException) -> str:
    """``403 Forbidden: <the apiserver's Status message>`` (on 403 it names user, verb, resource, group, scope)."""
    head = f"{exc.status} {exc.reason}".strip()
    body = getattr(exc, "body", None)
    if not body:
        return head
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):  # not a Status object: a proxy's page, say
        message = (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)).strip()
    message = message[:MAX_STATUS_MESSAGE]
    return f"{head}: {message}" if message else head


def get_json(api: kubernetes.client.ApiClient, path: str, query: list[tuple[str, Any]] | None = None) -> Any:
    """GET a path and parse its JSON body."""
    return json.loads(get_bytes(api, path, query))


def get_bytes(api: kubernetes.client.ApiClient, path: str, query: list[tuple[str, Any]] | None = None) -> bytes:
    """GET a path and return the raw body; ``ApiException`` for non-2xx answers."""
    response = api.call_api(
        path,
        "GET",
        query_params=query or [],
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
        _request_timeout=REQUEST_TIMEOUT,
    )
    try:
        return bytes(response.data)
    finally:
        response.release_conn()


def _group_resources(doc: Any, group: str, version: str) -> list[ApiResource]:
    found: list[ApiResource] = []
    for entry in doc.get("resources") or ():
        name = str(entry.get("name") or "")
        # "pods/log" and the like are subresources, not resources.
        if not name or "/" in name or "list" not in (entry.get("verbs") or ()):
            continue
        found.append(ApiResource(group, version, name, str(entry.get("kind") or ""), bool(entry.get("namespaced"))))
    return found


def discover(api: kubernetes.client.ApiClient) -> list[ApiResource]:
    """Every resource that supports ``list``, in its group's preferred version (core group first)."""
    targets: list[tuple[str, str]] = [("", "v1")]
    groups = get_json(api, "/apis")
    for group in groups.get("groups") or ():
        preferred = (group.get("preferredVersion") or {}).get("version")
        if not preferred:
            versions = group.get("versions") or ()
            preferred = versions[0]["version"] if versions else None
        if preferred:
            targets.append((str(group["name"]), str(preferred)))

    def fetch(target: tuple[str, str]) -> list[ApiResource]:
        group, version = target
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            return _group_resources(get_json(api, path), group, version)
        except ApiException as exc:
            # An aggregated API whose backend is down answers 503: its resources cannot be listed anyway.
            if exc.status in (404, 503):
                return []
            raise

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube-discovery") as pool:
        results = list(pool.map(fetch, targets))
    return [resource for group_list in results for resource in group_list]


# What the light cut gives of an item: name, namespace (None when cluster-scoped), the labels' JSON text (None
# without labels; ``labels`` parses it) and the item's exact bytes.
LightItem = tuple[str, str | None, bytes | None, bytes]


@dataclass(slots=True)
class Page:
    """One page of a list: its items (with their exact JSON bytes) and the continue token.

    After a full parse ``items`` holds (object, bytes) pairs; after the light cut ``light`` holds the items
    and ``items`` is empty.
    """

    items: list[tuple[dict[str, Any], bytes]]
    continue_token: str | None
    remaining: int | None
    light: list[LightItem] | None = None

    def __len__(self) -> int:
        return len(self.items) if self.light is None else len(self.light)


def page_token(raw: bytes) -> tuple[str | None, int | None]:
    """The continue token and remaining-item count of a list page, read from its head without parsing it all.

    The apiserver writes ``metadata`` before ``items``; only the head is searched so an item's data can never
    be mistaken for the list's metadata.
    """
    items_at = raw.find(b'"items":')
    head = raw[: items_at if items_at >= 0 else len(raw)]
    token = _CONTINUE.search(head)
    remaining = _REMAINING.search(head)
    return (
        token.group(1).decode() if token and token.group(1) else None,
        int(remaining.group(1)) if remaining else None,
    )


def _string(value: bytes) -> str:
    return str(json.loads(b'"' + value + b'"')) if b"\\" in value else value.decode()


def labels(text: bytes) -> dict[str, str]:
    """A light item's labels."""
    # The C scanner itself: json.loads costs more than the scan for an object this small.
    found: dict[str, str] = _SCAN(text.decode(), 0)[0]
    return found


def _light_items(raw: bytes, expected: int) -> list[LightItem] | None:
    """The light cut (see the module's docstring), or None when the page is not the expected shape."""
    start = raw.find(b'"items":[')
    if start < 0 or not raw.startswith(_ITEM_START, start + 9) or not raw.rstrip().endswith(b"}]}"):
        return None
    pos = start + 9
    last = len(raw.rstrip()) - 2  # the end of the last item: the page ends with "]}"
    if raw.count(_BOUNDARY, pos, last) != expected - 1:
        return None
    items: list[LightItem] = []
    append = items.append
    find = raw.find
    head = _LIGHT_HEAD.match
    # A page's items share one namespace or a few: each is decoded once.
    namespaces: dict[bytes, str] = {}
    while True:
        boundary = find(_BOUNDARY, pos, last)
        end = boundary + 1 if boundary >= 0 else last
        match = head(raw, pos, end)
        if match is None:
            return None
        name, namespace_text, label_text = match.groups()
        namespace = None
        if namespace_text is not None:
            namespace = namespaces.get(namespace_text)
            if namespace is None:
                namespace = namespaces[namespace_text] = _string(namespace_text)
        append((_string(name), namespace, label_text, raw[pos:end]))
        if boundary < 0:
            return items
        pos = boundary + 2


def parse_page(raw: bytes, *, light: bool = False, expected: int | None = None) -> Page:
    """Split a list's JSON into its items, each as (parsed object, its exact JSON bytes).

    ``light`` asks for the light cut (``Page.light``: names, namespaces, labels) when ``expected``, the number
    of items the page must hold, is known; it is used only if the page proves to be cut right.
    """
    if light and expected:
        cut = _light_items(raw, expected)
        if cut is not None:
            token, remaining = page_token(raw)
            return Page([], token, remaining, light=cut)
    text = raw.decode("utf-8")
    # An ASCII page (the usual case) has the same offsets in bytes and text, so an item's bytes are a slice of
    # the page rather than its text encoded again.
    ascii_only = len(text) == len(raw)
    items: list[tuple[dict[str, Any], bytes]] = []
    append = items.append
    metadata: dict[str, Any] = {}
    end = len(text)
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos] != "{":
        raise ValueError("a list answer is not a JSON object")
    pos += 1
    decode = _DECODER.raw_decode
    ws = _WS.match
    while pos < end:
        pos = ws(text, pos).end()  # type: ignore[union-attr]
        if text[pos] == "}":
            break
        if text[pos] == ",":
            pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
        key, pos = decode(text, pos)
        pos = ws(text, pos).end()  # type: ignore[union-attr]
        pos = ws(text, pos + 1).end()  # type: ignore[union-attr]  # past ':'
        if key != "items":
            value, pos = decode(text, pos)
            if key == "metadata" and isinstance(value, dict):
                metadata = value
            continue
        if text.startswith("null", pos):
            pos += 4
            continue
        pos = ws(text, pos + 1).end()  # type: ignore[union-attr]  # past '['
        while text[pos] != "]":
            item, stop = decode(text, pos)
            append((item, raw[pos:stop] if ascii_only else text[pos:stop].encode()))
            # The apiserver's JSON is compact: "," straight after an item; whitespace is handled all the same.
            if text[stop] == ",":
                pos = stop + 1
                if text[pos] in " \t\n\r":
                    pos = ws(text, pos).end()  # type: ignore[union-attr]
            else:
                pos = ws(text, stop).end()  # type: ignore[union-attr]
                if text[pos] == ",":
                    pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
        pos += 1
    remaining = metadata.get("remainingItemCount")
    return Page(items, metadata.get("continue") or None, int(remaining) if remaining is not None else None)


def list_query(
    *, limit: int, continue_token: str | None = None, label_selector: str | None = None
) -> list[tuple[str, Any]]:
    """The query of one list request."""
    query: list[tuple[str, Any]] = [("limit", limit)]
    if continue_token:
        query.append(("continue", continue_token))
    if label_selector:
        query.append(("labelSelector", label_selector))
    return query


def list_pages_raw(
    api: kubernetes.client.ApiClient,
    resource: ApiResource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[bytes]:
    """The raw JSON pages of one resource (paginated with limit/continue)."""
    token: str | None = None
    path = resource.path(namespace)
    while True:
        raw = get_bytes(api, path, list_query(limit=page_size, continue_token=token, label_selector=label_selector))
        yield raw
        token, _ = page_token(raw)
        if not token:
            return


def list_items(
    api: kubernetes.client.ApiClient,
    resource: ApiResource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Every object of one resource with ``kind`` and ``apiVersion`` set, page by page."""
    for raw in list_pages_raw(api, resource, namespace=namespace, label_selector=label_selector, page_size=page_size):
        for item, _ in parse_page(raw).items:
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
            yield item


def type_head(resource: ApiResource) -> bytes:
    """``{"kind":...,"apiVersion":...`` of a resource's objects: what ``item_json`` puts in front of list items."""
    return f'{{"kind":{json.dumps(resource.kind)},"apiVersion":{json.dumps(resource.api_version)}'.encode()


def item_json(resource: ApiResource, item: dict[str, Any], data: bytes, head: bytes | None = None) -> bytes:
    """An item's JSON as a ``GET`` answers it: the list's bytes with ``kind``/``apiVersion`` put in front."""
    if "kind" in item and "apiVersion" in item:
        return data
    return typed(type_head(resource) if head is None else head, data)


def typed(head: bytes, data: bytes) -> bytes:
    """A list item's bytes with ``type_head`` put in front (light items never have kind and apiVersion)."""
    return b"".join(typed_parts(head, data))


def typed_parts(head: bytes, data: bytes) -> tuple[bytes, bytes | memoryview]:
    """``typed`` in two pieces, for a writer that takes the bytes in parts (no copy of the item)."""
    return (head + b",", memoryview(data)[1:]) if len(data) > 2 else (head, b"}")


def count_items(
    api: kubernetes.client.ApiClient,
    resource: ApiResource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
) -> int | None:
    """How many objects a list would return (one ``limit=1`` request); None when the server cannot tell.

    The apiserver reports ``remainingItemCount`` only without a label selector.
    """
    raw = get_bytes(api, resource.path(namespace), list_query(limit=1, label_selector=label_selector))
    token, remaining = page_token(raw)
    page = parse_page(raw)
    if token and remaining is None:
        return None
    return len(page.items) + (remaining or 0)
