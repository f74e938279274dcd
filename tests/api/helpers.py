"""Shared by the API tests: the one error shape of docs/connectors/contract.md, and the API's routes read from
the URLconf."""

import json
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver, reverse

# Served to anyone, or no endpoint at all: not part of the key-scoped API.
NOT_ENDPOINTS = {"api:schema", "api:docs", "api:not-found"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def assert_error(response, status, code) -> dict:
    """
    Assert the response is exactly {"error": {"code", "message", "details", "request_id"}} with this status and
    code, `request_id` the answer's X-Request-Id (a replayed answer keeps the first one's; an answer made
    outside the middlewares, by calling a handler, has neither).
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    if "X-Request-Id" in response:
        assert set(body["error"]) == {"code", "message", "details", "request_id"}, body
        if response.get("Idempotent-Replayed") != "true":
            assert body["error"]["request_id"] == response["X-Request-Id"], body
    else:
        assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert isinstance(body["error"]["details"], dict), body
    return body["error"]["details"]


@dataclass(frozen=True)
class ApiRoute:
    name: str  # e.g. "api:event-list"
    methods: tuple[str, ...]  # what the view handles, without HEAD and OPTIONS
    params: tuple[str, ...]  # URL parameters, e.g. ("pk",)

    def url(self, **params) -> str:
        return reverse(self.name, kwargs={p: params.get(p, "1") for p in self.params} or None)


def _walk(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, ":".join(filter(None, [namespace, pattern.namespace])))
        elif isinstance(pattern, URLPattern) and namespace == "api":
            # An unnamed route still gets listed, so the registries that must cover every route fail on it.
            yield f"api:{pattern.name or f'<unnamed {pattern.pattern}>'}", pattern


def _methods(callback) -> tuple[str, ...]:
    if actions := getattr(callback, "actions", None):  # a viewset route: {"get": "list", ...}
        methods = set(actions)  # DRF adds "head" to this dict at the first request
    elif view_class := getattr(callback, "cls", None) or getattr(callback, "view_class", None):
        methods = {m for m in view_class.http_method_names if hasattr(view_class, m)}
    else:
        methods = {"get", "post"}  # a plain function view answers any method
    return tuple(sorted(m.upper() for m in methods - {"head", "options"}))


def api_routes() -> list[ApiRoute]:
    """Every endpoint under /api/v1/, generated from the URLconf so that a new route cannot be forgotten."""
    routes = []
    for name, pattern in _walk(get_resolver().url_patterns):
        if name in NOT_ENDPOINTS:
            continue
        routes.append(ApiRoute(name, _methods(pattern.callback), tuple(pattern.pattern.regex.groupindex)))
    return sorted(routes, key=lambda r: r.name)
