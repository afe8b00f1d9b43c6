"""A tiny authoritative DNS server on 127.0.0.1 (UDP) for the resolver tests.

    with DnsServer({"api.test": [("A", "127.0.0.1", 1)]}) as dns:
        Resolver([dns.address])
        dns.records["api.test"] = [("A", "127.0.0.2", 60)]   # change the answer
        dns.queries[("api.test", "A")]                       # how often it was asked

It answers A and AAAA questions from `records` (name -> [(type, address, ttl)]); a name it does
not know gets NXDOMAIN, a known name without records of the asked type an empty answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections import Counter

TYPES = {1: "A", 28: "AAAA"}
CODES = {name: code for code, name in TYPES.items()}


def _question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset of the question) of a query."""
    labels = []
    offset = 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    qtype, _ = struct.unpack("!HH", packet[offset + 1:offset + 5])
    return ".".join(labels), qtype, offset + 5


class DnsServer:
    def __init__(self, records: dict[str, list[tuple[str, str, int]]]) -> None:
        self.records = records
        self.queries: Counter[tuple[str, str]] = Counter()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stopping = threading.Event()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                packet, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(packet), peer)
            except (OSError, IndexError, struct.error, UnicodeDecodeError):
                continue

    def _answer(self, packet: bytes) -> bytes:
        (query_id,) = struct.unpack("!H", packet[:2])
        name, qtype, end = _question(packet)
        self.queries[(name, TYPES.get(qtype, str(qtype)))] += 1
        known = self.records.get(name)
        answers = [(kind, address, ttl) for kind, address, ttl in known or () if CODES[kind] == qtype]
        rcode = 3 if known is None else 0
        header = struct.pack("!HHHHHH", query_id, 0x8180 | rcode, 1, len(answers), 0, 0)
        body = b""
        for kind, address, ttl in answers:
            data = ipaddress.ip_address(address).packed
            body += struct.pack("!HHHIH", 0xC00C, CODES[kind], 1, ttl, len(data)) + data
        return header + packet[12:end] + body
