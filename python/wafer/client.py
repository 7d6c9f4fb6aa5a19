"""The online client: feature reads, pushes and the control plane of a running ``wafer serve``.

One persistent HTTP/1.1 connection per client and thread (``http.client``, keep-alive); requests
are small JSON bodies, so nothing else is needed. Errors become :mod:`wafer.errors` exceptions.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from . import errors

STATUSES = {"present": "PRESENT", "missing": "NOT_FOUND", "expired": "OUTSIDE_MAX_AGE"}


class OnlineResponse:
    """The features of a ``get_online_features`` call, one row per entity, in request order.

    ``to_dict()`` has the shape of Feast's ``OnlineResponse.to_dict()``: the join key columns
    first, then one list per feature (``feature``, or ``view__feature`` with
    ``full_feature_names``); missing plain features and expired values are ``None``, aggregations
    of an entity without events are what serving and training data give (counts and sums ``0``).
    """

    def __init__(
        self,
        raw: Dict[str, Any],
        features: Sequence[str],
        join_keys: Dict[str, List[Any]],
        full_feature_names: bool,
    ) -> None:
        self.raw = raw
        self.as_of: int = raw.get("as_of", 0)
        self.features = list(features)
        self.join_keys = join_keys
        self.names = [_column_name(f, full_feature_names) for f in self.features]
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise errors.InvalidRequest(
                f"features {dup} come from several views: pass full_feature_names=True", code="invalid_request"
            )

    def _cells(self, i: int) -> List[Dict[str, Any]]:
        f = self.features[i]
        return [r["features"].get(f, {}) for r in self.raw.get("results", [])]

    def to_dict(self, include_event_timestamps: bool = False) -> Dict[str, List[Any]]:
        out: Dict[str, List[Any]] = {k: list(v) for k, v in self.join_keys.items()}
        for i, name in enumerate(self.names):
            cells = self._cells(i)
            out[name] = [None if c.get("status") == "expired" else c.get("value") for c in cells]
            if include_event_timestamps:
                out[name + "__ts"] = [(c.get("event_time_ms") or 0) // 1000 for c in cells]
        return out

    @property
    def statuses(self) -> Dict[str, List[str]]:
        """Feast's field statuses per feature: ``PRESENT``, ``NOT_FOUND``, ``OUTSIDE_MAX_AGE``."""
        return {n: [STATUSES.get(c.get("status"), "NOT_FOUND") for c in self._cells(i)] for i, n in enumerate(self.names)}

    @property
    def event_timestamps(self) -> Dict[str, List[Optional[datetime]]]:
        """Event time of each value (UTC), ``None`` where there is none."""

        def ts(c: Dict[str, Any]) -> Optional[datetime]:
            ms = c.get("event_time_ms")
            return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)

        return {n: [ts(c) for c in self._cells(i)] for i, n in enumerate(self.names)}

    def to_pandas(self) -> Any:
        """A DataFrame of ``to_dict()`` with natural dtypes (nullable Int64 / boolean)."""
        import pandas as pd

        cols = {}
        for col, values in self.to_dict().items():
            vals = [v for v in values if v is not None]
            if vals and all(isinstance(v, bool) for v in vals):
                cols[col] = pd.array(values, dtype="boolean")
            elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                cols[col] = pd.array(values, dtype="Int64")
            elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                cols[col] = pd.array([float("nan") if v is None else v for v in values], dtype="float64")
            else:
                cols[col] = pd.array(values, dtype=object)
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        return f"OnlineResponse({self.to_dict()!r})"


def _column_name(feature: str, full: bool) -> str:
    view, _, name = feature.partition(":")
    return f"{view}__{name}" if full else (name or view)


class Client:
    """A client of one Wafer server.

    ``url`` defaults to ``$WAFER_URL`` or ``http://127.0.0.1:8080``; ``api_key`` to
    ``$WAFER_API_KEY`` (tenant routes); ``admin_token`` to ``$WAFER_ADMIN_TOKEN`` (tenants).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        admin_token: Optional[str] = None,
        timeout: float = 30.0,
    ) -> None:
        url = url or os.environ.get("WAFER_URL") or "http://127.0.0.1:8080"
        u = urllib.parse.urlsplit(url if "//" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {u.scheme!r}")
        self.url = url
        self._https = u.scheme == "https"
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("WAFER_API_KEY")
        self.admin_token = admin_token if admin_token is not None else os.environ.get("WAFER_ADMIN_TOKEN")
        self.timeout = timeout
        self._local = threading.local()
        self._entity_types: Optional[set] = None

    # -- transport -----------------------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            c = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        admin: bool = False,
        content_type: str = "application/json",
    ) -> Any:
        """One call: JSON in (or bytes), JSON out; an error status raises its exception."""
        if body is None:
            data = b""
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        else:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
        token = self.admin_token if admin else self.api_key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (0, 1):
            conn = self._conn()
            try:
                try:
                    conn.request(method, self._prefix + path, body=data, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may answer before reading a whole body (413): read that answer.
                    resp = conn.getresponse()
                    raw = resp.read()
                    self.close()
                    break
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                # A kept-alive connection the server closed: reconnect once.
                self.close()
                if attempt:
                    raise
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if resp.status >= 400:
            raise errors.from_response(resp.status, decoded, resp.getheader("Retry-After"))
        return decoded

    # -- features ------------------------------------------------------------------------------

    def get_online_features(
        self,
        features: Optional[Sequence[str]] = None,
        entity_rows: Optional[Sequence[Mapping[str, Any]]] = None,
        *,
        feature_service: Optional[str] = None,
        entities: Optional[Mapping[str, Sequence[Any]]] = None,
        request_data: Optional[Mapping[str, Sequence[Any]]] = None,
        full_feature_names: bool = False,
        as_of: Any = None,
    ) -> OnlineResponse:
        """Read features for some entities, as Feast's ``FeatureStore.get_online_features``.

        Give ``features`` (``view:feature``) or ``feature_service``, and either ``entity_rows``
        (Feast's list of dicts; keys that are no view's entity are request data) or ``entities``
        (``{entity: [keys]}``) with optional ``request_data`` (``{param: [values]}``).
        ``as_of`` (ms, or a datetime) reads at a past time.
        """
        if (features is None) == (feature_service is None):
            raise ValueError("give exactly one of `features` and `feature_service`")
        if (entity_rows is None) == (entities is None):
            raise ValueError("give exactly one of `entity_rows` and `entities`")
        if isinstance(features, str):
            features = [features]
        req_data: Dict[str, List[Any]] = {k: list(v) for k, v in (request_data or {}).items()}
        if entity_rows is not None:
            kinds = self._entities()
            rows = list(entity_rows)
            keys: Dict[str, None] = {}
            for row in rows:
                keys.update(dict.fromkeys(row))
            cols = {k: [row.get(k) for row in rows] for k in keys}
            join = {k: v for k, v in cols.items() if k in kinds}
            req_data.update({k: v for k, v in cols.items() if k not in kinds})
        else:
            join = {k: list(v) for k, v in (entities or {}).items()}
        body: Dict[str, Any] = {"entities": {k: [_key(x) for x in v] for k, v in join.items()}}
        if features is not None:
            body["features"] = list(features)
        else:
            body["feature_service"] = feature_service
        if req_data:
            body["request_data"] = req_data
        if as_of is not None:
            body["as_of"] = _ms(as_of)
        raw = self.request("POST", "/v1/features", body)
        names = list(features) if features is not None else _service_features(raw)
        return OnlineResponse(raw, names, join, full_feature_names)

    def _entities(self) -> set:
        """Entity types of the tenant's views (what separates join keys from request data)."""
        if self._entity_types is None:
            views = self.views()
            self._entity_types = {v["entity"] for v in views if v.get("entity")}
        return self._entity_types

    def push(self, view: str, events: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
        """Push events to a stream view (JSONL event objects); readable when this returns.

        Returns ``{"accepted", "rows", "failed": [{"index", "code", "error"}]}``.
        """
        return self.request("POST", f"/v1/views/{_q(view)}/events", {"events": list(events)})

    # -- control plane ------------------------------------------------------------------------

    def views(self) -> List[Dict[str, Any]]:
        """The tenant's views (name, kind, entity, transform, features...)."""
        return self.request("GET", "/v1/views")["views"]

    def transforms(self) -> List[Dict[str, Any]]:
        return self.request("GET", "/v1/transforms")["transforms"]

    def deploy(self, name: str, wasm: Any, *, activate: bool = True) -> Dict[str, Any]:
        """Upload a transform (bytes or a path): validated, precompiled, activated unless told not to."""
        if isinstance(wasm, (str, os.PathLike)):
            with open(wasm, "rb") as f:
                wasm = f.read()
        q = "" if activate else "?activate=false"
        return self.request("PUT", f"/v1/transforms/{_q(name)}{q}", bytes(wasm), content_type="application/wasm")

    def activate(self, transform: str, version: str) -> Dict[str, Any]:
        """Make ``version`` (a sha256 id) the active version of ``transform`` (rollback)."""
        return self.request("POST", f"/v1/transforms/{_q(transform)}/activate", {"version": version})

    def put_view(self, name: str, spec: Mapping[str, Any]) -> Dict[str, Any]:
        self._entity_types = None
        return self.request("PUT", f"/v1/views/{_q(name)}", dict(spec))

    def delete_view(self, name: str) -> Dict[str, Any]:
        self._entity_types = None
        return self.request("DELETE", f"/v1/views/{_q(name)}")

    def tenants(self) -> List[Dict[str, Any]]:
        """Every tenant (admin token)."""
        return self.request("GET", "/v1/admin/tenants", admin=True)["tenants"]

    def create_tenant(self, name: str, quotas: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        return self.request("POST", "/v1/admin/tenants", {"name": name, "quotas": dict(quotas or {})}, admin=True)

    def set_tenant_disabled(self, name: str, disabled: bool) -> Dict[str, Any]:
        return self.request("PATCH", f"/v1/admin/tenants/{_q(name)}", {"disabled": disabled}, admin=True)

    def create_key(self, tenant: str) -> Dict[str, Any]:
        """A new API key for ``tenant``: ``{"id", "tenant", "key"}`` (the key is shown only here)."""
        return self.request("POST", f"/v1/admin/tenants/{_q(tenant)}/keys", admin=True)

    def revoke_key(self, tenant: str, key_id: str) -> Dict[str, Any]:
        return self.request("DELETE", f"/v1/admin/tenants/{_q(tenant)}/keys/{_q(key_id)}", admin=True)

    def health(self) -> bool:
        return self.request("GET", "/healthz").get("status") == "ok"


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _key(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        raise errors.InvalidRequest(f"entity key {x!r} is not a string or an integer", code="invalid_request")
    return x if isinstance(x, str) else str(x)


def _ms(t: Any) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("as_of: a naive datetime is ambiguous; give a timezone")
        return int(t.timestamp() * 1000)
    return int(t)


def _service_features(raw: Dict[str, Any]) -> List[str]:
    results = raw.get("results") or []
    return list(results[0]["features"].keys()) if results else []
