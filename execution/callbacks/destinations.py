"""Where a callback may go: an http(s) URL on an allowed host, never to a private address.

Checked twice. At submit (:func:`check_callback_url`), so a refused destination is
the client's 400 and nothing is recorded. At delivery (:func:`resolve_destination`),
since a name can resolve elsewhere by then (DNS rebinding): the delivery connects
to one of the addresses checked here, never resolving the name again.

Hosts match ``CALLBACK_ALLOWED_HOSTS`` as Django's ALLOWED_HOSTS do (an exact name,
``.example.com`` for a domain and its subdomains, ``*`` for any). Loopback, private,
link-local, shared, reserved, site-local and other non-global addresses are refused
unless ``CALLBACK_ALLOW_PRIVATE_ADDRESSES``, and so are IPv6 addresses that embed
such an IPv4 address; multicast and unspecified addresses always are.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.http.request import validate_host

from execution.callbacks.models import CALLBACK_URL_MAX_LENGTH
from plugins.validation.semantic import SemanticCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}

logger = logging.getLogger(__name__)


class DestinationRefused(Exception):
    """A callback URL, or the address its host resolves to, that callbacks may not reach.

    ``code`` is the refusal's error type. A ``SemanticCode`` says the published schema
    (a string of ``format: uri`` matching ``CALLBACK_URL_PATTERN``, at most
    ``CALLBACK_URL_MAX_LENGTH`` long) accepts the URL: the server's configuration or
    DNS refuses it, which no schema can state (docs/api.md, "Semantic refusals").
    """

    def __init__(self, message: str, code: str = "callback_url_invalid") -> None:
        super().__init__(message)
        self.code = code


# What the published schema says of a callback URL besides its format and length (an
# ECMA-262 regex): http(s), a host, no credentials, no fragment. The rest is semantic.
CALLBACK_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+(?:[/?][^#]*)?$"
NOT_ALLOWED = SemanticCode("callback_host_not_allowed")
UNREACHABLE = SemanticCode("callback_address_refused")
UNRESOLVED = SemanticCode("callback_host_unresolved")


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses its host had when checked."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]


def check_callback_url(url: str) -> str:
    """``url`` if callbacks may go there now; else DestinationRefused saying why."""
    resolve_destination(url)
    return url


def resolve_destination(url: str) -> Destination:
    """The checked destination of ``url``, its host resolved once; DestinationRefused if not."""
    parts = _parse(url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = _addresses(host, port)
    for address in addresses:
        problem = address_problem(address)
        if problem:
            # The address stays in the server's log: a client learns no internal name's address.
            logger.warning("Callback host %s refused: it resolves to %s", host, address)
            raise DestinationRefused(
                f"The callback host {host} resolves to an address callbacks may not reach: "
                f"{problem}",
                UNREACHABLE,
            )
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Destination(parts.scheme, host, port, target, tuple(str(a) for a in addresses))


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64's well-known
# prefix (RFC 6052) and the deprecated IPv4-compatible addresses (RFC 4291).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# NAT64 for local use (RFC 8215): always an operator's own network.
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def address_problem(address: IPAddress) -> str:
    """Why callbacks may not connect to ``address`` ("" when they may).

    An IPv6 address that embeds an IPv4 one (mapped, NAT64, IPv4-compatible, 6to4,
    Teredo) is judged by that IPv4 address too: ``64:ff9b::a9fe:a9fe`` reaches
    169.254.169.254 through a NAT64 gateway, although Python calls it global.
    """
    judged = _judged_addresses(address)
    if any(each.is_multicast or each.is_unspecified for each in judged):
        return "a multicast or unspecified address is never a callback's destination"
    if settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES or all(_is_public(each) for each in judged):
        return ""
    return (
        "a loopback, private, link-local or reserved address, refused unless "
        "CALLBACK_ALLOW_PRIVATE_ADDRESSES is on"
    )


def _is_public(address: IPAddress) -> bool:
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    return address.is_global and not address.is_reserved and not site_local


def _judged_addresses(address: IPAddress) -> list[IPAddress]:
    """``address``, or what it stands for: the IPv4 address(es) an IPv6 one carries."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    low_32_bits = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64:
        return [low_32_bits]
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return [low_32_bits]
    if address in LOCAL_NAT64:
        return [address, low_32_bits]  # the prefix itself is reserved: refused
    if address.sixtofour is not None:
        return [address, address.sixtofour]
    if address.teredo is not None:
        return [address, *address.teredo]
    return [address]


def _parse(url: str) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise DestinationRefused("The callback URL must be a non-empty string.")
    if len(url) > CALLBACK_URL_MAX_LENGTH:
        raise DestinationRefused(
            f"The callback URL is longer than {CALLBACK_URL_MAX_LENGTH} characters."
        )
    if not url.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise DestinationRefused(
            "The callback URL must be ASCII without spaces or control characters "
            "(encode an international name as IDNA)."
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise DestinationRefused(f"The callback URL is not a valid URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise DestinationRefused("The callback URL must start with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("The callback URL must not carry credentials.")
    if "#" in url:  # an empty fragment too, as the schema's pattern says
        raise DestinationRefused("The callback URL must not have a fragment (#...).")
    try:
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError as exc:  # digits the pattern allows, past 65535
        raise DestinationRefused(
            f"The callback URL is not a valid URL: {exc}", SemanticCode("callback_port_invalid")
        ) from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        # "http:///x" the schema's pattern refuses; "http://:80/x" it does not.
        code = SemanticCode("callback_host_missing") if parts.netloc else "callback_url_invalid"
        raise DestinationRefused("The callback URL has no host.", code)
    allowed = list(settings.CALLBACK_ALLOWED_HOSTS)
    if not allowed:
        raise DestinationRefused(
            "Completion callbacks are off: CALLBACK_ALLOWED_HOSTS names no host.", NOT_ALLOWED
        )
    # Django writes an IPv6 literal in brackets, as in ALLOWED_HOSTS ("[::1]").
    if not validate_host(f"[{host}]" if ":" in host else host, allowed):
        raise DestinationRefused(
            f"The callback host {host} is not one of CALLBACK_ALLOWED_HOSTS.", NOT_ALLOWED
        )
    return parts


def _addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` has now: itself for an IP literal, else what DNS answers."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(
            f"The callback host {host} does not resolve: {exc}", UNRESOLVED
        ) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(f"The callback host {host} has no address.", UNRESOLVED)
    return addresses
