"""python-telegram-bot's requests to the Bot API, sent with aiohttp instead of httpx.

PTB sends every request through a ``BaseRequest`` and lets an application give its own
(``ApplicationBuilder.request``; PTB documents it as the way to use another HTTP library). Its
own, ``HTTPXRequest``, took 27 % of the gateway's CPU in the benchmark's burst (py-spy,
bench/results/profile-findings.md): the bot sends about 2.5 messages per client message. On
this machine an httpx request over loopback cost the client 1.03 ms of CPU and the same request
with aiohttp (already installed: Rasa depends on it) 0.29 ms.

What PTB relies on is kept: the same form fields (URL-encoded, or multipart when a file is
sent, such as a transcript), the same user agent, each call's read, write, connect and pool
time-outs (a request's whole time is bounded by their sum, as aiohttp has no write time-out of
its own), proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, a
proxy's password in ``~/.netrc``) as httpx reads them, and the same errors: ``TimedOut``
for a time-out and ``NetworkError`` for anything else that stops the request. PTB's own code
(``BaseRequest.post``) turns status codes and Telegram's answers into its errors, as before.
An error's message names the aiohttp exception's class only: the URL holds the bot's token.

The proxy for a host is looked up once, when the first request goes to it, not on every request
(aiohttp's ``trust_env`` reads the environment and ``~/.netrc`` each time: 2.6 % of the
gateway's CPU at 10 concurrent chats, bench/results/profile-findings.md). A service reads its
environment when it starts; a changed proxy takes a restart, as for every other setting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL


def proxy_from_env(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy aiohttp's ``trust_env`` would use for ``url``: (None, None) for none."""
    try:
        return get_env_proxy_for_url(url)
    except LookupError:  # no proxy for the scheme, or NO_PROXY names the host
        return None, None


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one ``aiohttp.ClientSession`` (connections kept alive and reused)."""

    __slots__ = ("_connect_timeout", "_media_write_timeout", "_pool_size", "_pool_timeout",
                 "_proxies", "_read_timeout", "_session", "_write_timeout")

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        # HTTPXRequest's defaults, parameter for parameter
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}  # by origin

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                trust_env=False,  # the environment's proxy is looked up once a host: proxy()
            )

    def proxy(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The environment's proxy for the origin of ``url``, looked up once for each origin."""
        origin = "/".join(url.split("/", 3)[:3])  # scheme://host:port, never the path's token
        if origin not in self._proxies:
            self._proxies[origin] = proxy_from_env(URL(url))
        return self._proxies[origin]

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._media_write_timeout if files else self._write_timeout
        phases = (pool_timeout, connect_timeout, write_timeout, read_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None if None in phases else sum(phases),  # type: ignore[arg-type]
            connect=None if None in (pool_timeout, connect_timeout) else pool_timeout + connect_timeout,  # type: ignore[operator]
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        data: Any = fields or None
        if files:
            form = aiohttp.FormData()
            for name, value in (fields or {}).items():
                form.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            data = form
        proxy, proxy_auth = self.proxy(url)
        try:
            async with self._session.request(
                method, url, data=data, headers={"User-Agent": self.USER_AGENT}, timeout=timeout,
                proxy=proxy, proxy_auth=proxy_auth,
            ) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc
