"""Raw requests through kubernetes.aio's ApiClient (auth, TLS, token refresh), and what a failed response means.

The bare ApiClient, not the generated API classes: the CoreV1Api module alone
costs ~0.7 s and ~25 MiB, for the few URLs built here; bodies are read raw
and decoded by kubedecode.py.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .kubedecode import ApiError, decode_status, status_error
from .kubeimport import ApiClient
from .kuberetry import parse_retry_after


class RequestRejected(ApiError):
    """A 400 or 422: the API server refuses the request itself, so sending it again cannot help."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"http_{code}", message)
        self.code = code


async def send(
    api: ApiClient,
    method: str,
    path: str,
    timeout: float,
    query: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> aiohttp.ClientResponse:
    """One request; the raw response, body unread. Query values that are None are left out."""
    params = [(key, value) for key, value in (query or {}).items() if value is not None]
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, headers, serialized, post = await api.param_serialize(
        method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    response = await api.call_api(method, url, headers, serialized, post, _request_timeout=timeout, _preload_content=False)
    return response.response


async def check(resp: aiohttp.ClientResponse, ok: tuple[int, ...] = (200,)) -> None:
    """Raise what a failed response means (Gone, VersionTooLarge, RequestRejected, ApiError), releasing it.

    Returns, the body unread, when the status is one of `ok`.
    """
    if resp.status in ok:
        return
    try:
        body = await resp.read()
    finally:
        resp.release()
    status = decode_status(body)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if resp.status in (400, 422):
        raise RequestRejected(resp.status, status.message)
    raise status_error(resp.status, status, f"http_{resp.status}", retry_after if retry_after is not None else status.retry_after)


async def read_all(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body of a response, which is released after."""
    try:
        return await resp.read()
    finally:
        resp.release()
