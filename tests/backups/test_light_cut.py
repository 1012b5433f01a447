"""The light cut of list pages (``kube.parse_page(light=True)``): exact on the real apiserver, refused when unsure.

A backup with small pages (every page's item count is known, so the cut is used) stores every item byte for
byte as ``GET`` answers it and skips the excluded one, whatever the items' strings hold; pages whose count does
not match (a nested array of metadata-first objects, as raw JSON can hold) or whose metadata is not in Go's
order fall back to the full parse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stowage.agent import kube as kube_access
from stowage.agent.kube import ApiResource
from stowage.domain.backups import BackupPhase, BackupRequest
from tests.backups.helpers import BUCKET, check_items_equal_get, job, read_backup, run
from tests.support.aws_accounts import AwsAccounts
from tests.support.kube import Kube

pytestmark = pytest.mark.timeout(240)
CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap", True)
STATEFULSETS = ApiResource("apps", "v1", "statefulsets", "StatefulSet", True)


def _statefulset(name: str) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    claims: list[dict[str, Any]] = [
        {"metadata": {"name": claim, "namespace": "elsewhere"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
        for claim in ("data", "logs")
    ]
    for claim in claims:
        claim["spec"]["resources"] = {"requests": {"storage": "1Gi"}}
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            "volumeClaimTemplates": claims,
        },
    }


def _light_pages(kube: Kube, resource: ApiResource, namespace: str) -> int:
    """How many pages of a list in pages of 5 were cut; each cut is checked against the full parse."""
    token: str | None = None
    remaining: int | None = None
    light_pages = 0
    while True:
        query = kube_access.list_query(limit=5, continue_token=token)
        raw = kube_access.get_bytes(kube.api, resource.path(namespace), query)
        expected = remaining
        token, remaining = kube_access.page_token(raw)
        page = kube_access.parse_page(raw, light=True, expected=5 if token else expected)
        full = kube_access.parse_page(raw)
        if page.light is not None:
            light_pages += 1
            assert [data for *_, data in page.light] == [data for _, data in full.items]
            for (name, ns, labels, _), (item, _) in zip(page.light, full.items, strict=True):
                meta = item["metadata"]
                found = (name, ns, kube_access.labels(labels) if labels else None)
                assert found == (meta["name"], meta["namespace"], meta.get("labels"))
        if not token:
            return light_pages


def test_small_pages_are_cut_exactly_on_the_real_apiserver(kube: Kube, aws: AwsAccounts) -> None:
    aws.create_bucket(BUCKET, region="us-east-1")
    s3 = aws.client("s3", region="us-east-1")
    ns = kube.namespace("cut")
    for i in range(23):
        labels = {"app": "cut", "n": str(i)}
        if i == 7:
            labels["velero.io/exclude-from-backup"] = "true"
        data = {"text": 'quotes " and \\ and },{"metadata":{"name":"fake"} and \u00e9\n' * 3, "i": str(i)}
        body = {"metadata": {"name": f"cm-{i:03d}", "labels": labels, "annotations": {"a": "{[}"}}, "data": data}
        kube.create(f"/api/v1/namespaces/{ns}/configmaps", body)
    for i in range(7):
        kube.create(f"/apis/apps/v1/namespaces/{ns}/statefulsets", _statefulset(f"sts-{i}"))

    # The pages as the engine reads them are cut (every one: each page's count is known), exactly as parsed.
    assert _light_pages(kube, CONFIGMAPS, ns) == 5  # 23 ConfigMaps in pages of 5
    # On 1.20 volumeClaimTemplates carry kind and apiVersion, so no nested boundary: cut as well.
    assert _light_pages(kube, STATEFULSETS, ns) == 2

    result = run(kube, s3, job("cut", BackupRequest(namespaces=(ns,))), page_size=5)
    assert result.outcome.phase == BackupPhase.COMPLETED, result.outcome
    stored = read_backup(s3, "cut")
    # No kube-root-ca.crt: v1.20 without a controller-manager publishes none.
    assert stored.names("configmaps", ns) == {f"cm-{i:03d}" for i in range(23) if i != 7}
    assert stored.names("statefulsets.apps", ns) == {f"sts-{i}" for i in range(7)}
    assert check_items_equal_get(kube, stored, {ns}, set()) >= 22 + 7


def _page(items: list[str], *, token: str = "") -> bytes:
    head = '{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"'
    head += f',"continue":"{token}"' if token else ""
    return (head + '},"items":[' + ",".join(items) + "]}\n").encode()


def _item(name: str, extra: str = "") -> str:
    return f'{{"metadata":{{"name":"{name}","namespace":"a","uid":"u","labels":{{"x":"y"}}}}{extra}}}'


def test_the_cut_needs_the_expected_count_and_the_known_field_order() -> None:
    plain = _page([_item("a"), _item("b"), _item("c")], token="t")
    cut = kube_access.parse_page(plain, light=True, expected=3).light
    assert cut is not None and [name for name, *_ in cut] == ["a", "b", "c"]
    assert [data for *_, data in cut] == [data for _, data in kube_access.parse_page(plain).items]
    # An unknown count, a wrong count or a nested array of metadata-first objects: parsed in full.
    assert kube_access.parse_page(plain, light=True).light is None
    assert kube_access.parse_page(plain, light=True, expected=2).light is None
    nested = ',"spec":{"list":[{"x":1},{"metadata":{"name":"evil","namespace":"kube-system"}}]}'
    tricky = _page([_item("a", nested), _item("b")], token="t")
    assert kube_access.parse_page(tricky, light=True, expected=2).light is None
    assert [i["metadata"]["name"] for i, _ in kube_access.parse_page(tricky, light=True, expected=2).items] == [
        "a",
        "b",
    ]
    # Labels anywhere but in Go's place (an unknown field before them) could hide the exclusion label.
    odd = '{"metadata":{"name":"a","namespace":"a","future":"x","labels":{"velero.io/exclude-from-backup":"true"}}}'
    assert kube_access.parse_page(_page([odd]), light=True, expected=1).light is None
    # Escapes in names are decoded; labels with escapes are not cut.
    escaped = '{"metadata":{"name":"a\\u0041","namespace":"a"}}'
    assert (cut := kube_access.parse_page(_page([escaped]), light=True, expected=1).light) and cut[0][0] == "aA"
    weird = '{"metadata":{"name":"a","namespace":"a","labels":{"k":"\\u0041"}}}'
    assert kube_access.parse_page(_page([weird]), light=True, expected=1).light is None
    assert json.loads(kube_access.typed(kube_access.type_head(CONFIGMAPS), b'{"metadata":{}}'))["kind"] == "ConfigMap"
