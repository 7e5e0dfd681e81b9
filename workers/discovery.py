"""Workers found by DNS: a name resolved periodically, one worker per address.

With a Kubernetes headless Service (``clusterIP: None``) the name resolves to the addresses of
the Service's *ready* pods, so pods that start, pass readiness, die or scale away show up here
within ``interval_s``. A failed lookup returns None and the pool keeps the last answer: a DNS
blip must not empty a tier, and workers that are really gone are ejected by their breakers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from workers.config import DiscoveryConfig
from workers.worker import Worker

# 5: the system resolver's default timeout per query; a lookup slower than that has failed.
LOOKUP_TIMEOUT_S = 5.0

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for TCP (A and AAAA records), via the system resolver."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def worker_url(scheme: str, address: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(address).version == 6
    except ValueError:
        is_v6 = False
    host = f"[{address}]" if is_v6 else address
    return f"{scheme}://{host}:{port}"


class DnsDiscovery:
    """Resolves one tier's ``discovery.dns`` into worker base URLs."""

    def __init__(self, config: DiscoveryConfig, resolver: Resolver = resolve_addresses) -> None:
        self.config = config
        self._resolve = resolver

    async def urls(self) -> tuple[str, ...] | None:
        """Sorted, de-duplicated worker URLs; None when the lookup failed."""
        c = self.config
        try:
            async with asyncio.timeout(max(c.interval_s, LOOKUP_TIMEOUT_S)):
                addresses = await self._resolve(c.dns, c.port)
        except (OSError, UnicodeError):  # socket.gaierror and TimeoutError are OSErrors
            return None
        return tuple(sorted({worker_url(c.scheme, a, c.port) for a in addresses}))


def reconcile(
    workers: Sequence[Worker], urls: tuple[str, ...], make: Callable[[str], Worker]
) -> tuple[list[Worker], list[Worker], set[str]]:
    """(the tier's new worker list, the workers added, the URLs removed) for a DNS answer.

    Static workers (``endpoints``, ``launch``) always stay; a discovered worker stays while DNS
    lists it and keeps its breaker and counters. A removed worker's calls in flight finish.
    """
    known = {w.url for w in workers}
    kept = [w for w in workers if w.static or w.url in urls]
    added = [make(url) for url in urls if url not in known]
    return kept + added, added, known - {w.url for w in kept}
