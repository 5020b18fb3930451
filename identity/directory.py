"""The customer directory: who a caller is, by the number they call from or the customer number they type.

Two kinds, one interface:

* ``StoreDirectory`` (the default): a table in VoxGate's own store, loaded with
  ``voxgate customer add`` or ``voxgate customer import FILE.csv``.
* ``RestDirectory``: the operator's own system (a CRM). VoxGate asks
  ``GET URL?phone=+447700900123`` or ``GET URL?customer_id=C-1`` and takes a
  200 answer of ``{"customer_id": ..., "name": ..., "phones": [...]}`` (or a
  list of them) or a 404 for nobody. Anything else (an error status, a timeout,
  a malformed answer) is a ``DirectoryError``: the caller is not identified that
  way, and the agent is told why.

PINs are never asked of a directory: they live in VoxGate's store, scrypt-hashed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import aiohttp

from store.base import Customer, Customers


class DirectoryError(Exception):
    """The directory could not answer (down, slow, or an answer we cannot read); the message is for agents."""


class Directory(ABC):
    @abstractmethod
    async def by_phone(self, number: str) -> list[Customer]:
        """Everyone registered with this number (a shared line gives several; nobody gives none)."""

    @abstractmethod
    async def by_id(self, customer_id: str) -> Customer | None:
        """The customer with this identifier, if there is one."""


class StoreDirectory(Directory):
    def __init__(self, customers: Customers) -> None:
        self.customers = customers

    async def by_phone(self, number: str) -> list[Customer]:
        return self.customers.by_phone(number)

    async def by_id(self, customer_id: str) -> Customer | None:
        return self.customers.get(customer_id)


class HttpClient:
    """One aiohttp client for the operator's systems (directory, code sender), opened on first use.

    Built with the rest of the server, before any event loop runs; the session itself needs the loop.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def get(self, url: str, **kwargs):
        return self.session().get(url, **kwargs)

    def post(self, url: str, **kwargs):
        return self.session().post(url, **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class RestDirectory(Directory):
    def __init__(self, url: str, http: HttpClient, token: str | None = None, timeout: float = 3.0) -> None:
        self.url, self._http = url, http
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def by_phone(self, number: str) -> list[Customer]:
        return await self._get(phone=number)

    async def by_id(self, customer_id: str) -> Customer | None:
        found = await self._get(customer_id=customer_id)
        return next((c for c in found if c.id == customer_id), None)

    async def _get(self, **params: str) -> list[Customer]:
        try:
            async with self._http.get(self.url, params=params, headers=self._headers, timeout=self._timeout) as r:
                if r.status == 404:
                    return []
                if r.status != 200:
                    raise DirectoryError(f"the customer directory answered HTTP {r.status}")
                body = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise DirectoryError(f"the customer directory did not answer ({type(e).__name__})") from None
        return [_customer(entry) for entry in (body if isinstance(body, list) else [body])]


def _customer(entry: object) -> Customer:
    if not isinstance(entry, dict) or not isinstance(entry.get("customer_id"), str) or not entry["customer_id"]:
        raise DirectoryError('the customer directory answered without a "customer_id"')
    phones = entry.get("phones") or ([entry["phone"]] if entry.get("phone") else [])
    name = entry.get("name")
    return Customer(entry["customer_id"], name if isinstance(name, str) else None, tuple(str(p) for p in phones))
