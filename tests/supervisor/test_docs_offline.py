"""``/docs`` and ``/redoc`` work offline: every script, style and icon they load is the
supervisor's own, served from the assets ``fastapi-offline`` bundles, never from a CDN.

A real supervisor over HTTP, with API tokens on: the pages, their assets and
``/openapi.json`` stay open (as before), while ``/v1`` still asks for a token.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import httpx
import pytest

from shared import SupervisorSettings
from shared.serving import serving
from supervisor.app import create_app

pytestmark = pytest.mark.e2e

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _Links(HTMLParser):
    """The URLs a page makes a browser load: ``<script src>``, ``<link href>``, ``<img src>``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@contextlib.asynccontextmanager
async def supervisor() -> AsyncIterator[httpx.AsyncClient]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    settings = SupervisorSettings(redis_url="memory://", workers="", api_tokens="s3cret")
    async with (
        serving(create_app(settings), sockets=[sock]) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        yield http


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_doc_pages_load_only_their_own_assets(page: str) -> None:
    async with supervisor() as http:
        response = await http.get(page)  # no token: the pages are public, as before
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert "cdn." not in html and "googleapis" not in html, html
        links = _Links()
        links.feed(html)
        assert any(u.endswith(".js") for u in links.urls), links.urls
        if page == "/docs":
            assert any(u.endswith(".css") for u in links.urls), links.urls
        for url in links.urls:
            parsed = urlparse(url)
            assert not parsed.scheme and not parsed.netloc, f"{page} loads {url} from elsewhere"
            asset = await http.get(urljoin(page, url))
            assert asset.status_code == 200, url
            suffix = parsed.path[parsed.path.rfind(".") :]
            assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
            assert len(asset.content) > 1000, url  # the real bundle, not a stub
        spec = await http.get("/openapi.json")
        assert spec.status_code == 200 and spec.json()["info"]["title"] == "mcp-fleet supervisor"
        assert (await http.get("/v1/jobs")).status_code == 401


async def test_swagger_ui_calls_no_outside_validator() -> None:
    """Swagger UI's default ``validatorUrl`` is an outside service: it is turned off."""
    async with supervisor() as http:
        html = (await http.get("/docs")).text
        assert '"validatorUrl": null' in html, html
        assert "'/openapi.json'" in html  # the spec is read from the supervisor itself
