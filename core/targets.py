"""
Where the hub may send HTTP: the one SSRF rule for webhook URLs and manifest base URLs
(docs/operations/configuration.md, WEBHOOK_ALLOW_PRIVATE_TARGETS). Unless private targets are allowed, a
target is allowed only when every address its host resolves to is global. Subscribing (webhooks), saving
settings (services) and sending (outbound, which connects to the very address checked here) all ask this
module. It imports nothing else of `integrations`, so each of them can.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Blocks that Python 3.11's `is_global` still calls global, refused all the same (#14, finding 1).
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(block)
    for block in (
        "192.0.0.0/24",  # IETF protocol assignments (RFC 6890): anycast and translator addresses, no receivers
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526): a relay forwards into a tunnel
        "fec0::/10",  # site-local, deprecated (RFC 3879) yet still routed inside some networks
    )
)
# NAT64's well-known prefix (RFC 6052): 64:ff9b::a.b.c.d is the IPv4 host a.b.c.d, through a translator.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: Address) -> bool:
    """
    True when `address` is global unicast. IPv4 inside IPv6 is judged as the IPv4 address it reaches (mapped,
    NAT64) or must be public as well (the ends of a 6to4 or Teredo tunnel).
    """
    # By hand: `ipaddress` classifies addresses but unwraps only ::ffff:0:0/96, and its is_global counts
    # multicast, site-local and the blocks above as global.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        tunnelled = [address.sixtofour] if address.sixtofour else list(address.teredo or ())
        if not all(is_public(end) for end in tunnelled):
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not any(address.version == block.version and address in block for block in _ALSO_REFUSED)
    )


def public_addresses(host: str, port: int, *, field: str = "url") -> list[str]:
    """Every address `host` resolves to, if all are public; else ValidationError on `field`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ValidationError({field: [f"The host {host!r} does not resolve."]}) from None
    addresses = []
    for *_, sockaddr in infos:
        text = sockaddr[0].split("%", 1)[0]  # drop an IPv6 zone id
        if not is_public(ipaddress.ip_address(text)):
            # Every address is checked: a name with one public and one private address is refused.
            raise ValidationError({field: ["The URL points to a loopback, private or reserved address."]})
        addresses.append(text)
    if not addresses:
        raise ValidationError({field: [f"The host {host!r} does not resolve."]})
    return addresses


def check_target_url(url: str, *, field: str = "url", allow_private: bool | None = None) -> None:
    """Raise ValidationError (on `field`) unless `url` is http(s) with a host whose every address is public."""
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE_TARGETS
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError({field: ["Enter a valid URL."]}) from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError({field: ["Only http and https URLs are allowed."]})
    host = parts.hostname
    if not host:
        raise ValidationError({field: ["The URL needs a host."]})
    if allow_private:
        return
    public_addresses(host, port or (443 if parts.scheme == "https" else 80), field=field)
