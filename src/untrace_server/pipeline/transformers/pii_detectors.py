"""PII and secret detectors: a cheap gate, a linear regex, and a check where one exists
(Luhn for cards, mod-97 for IBANs, the address parser for IPv6).

What they deliberately leave alone: order numbers and other bare digit runs (a phone
number needs ``+``/``00`` and a country code, or the ``(555) 123-4567`` shape; a card
needs a card-network prefix and a valid Luhn sum), timestamps and dates, version
strings (``1.2.3``, ``v1.2.3.4``), UUIDs and hex hashes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DETECTORS", "Detector", "candidate_windows", "iban_valid", "luhn_valid"]


@dataclass(frozen=True)
class Detector:
    name: str
    label: str
    regex: re.Pattern[str]
    gate: Callable[[str], bool]
    validate: Callable[[str], bool] | None = None
    group: int = 0
    numeric: bool = False  # run only inside digit runs found by one shared pass


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)"
)


def _card_valid(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


def iban_valid(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _phone_valid(text: str) -> bool:
    return 8 <= sum(c.isdigit() for c in text) <= 15


def _ipv6_valid(text: str) -> bool:
    # some digit other than 0: '::' and 'a::b' (C++, Rust, Ruby) are not addresses here
    if not any(c in "123456789" for c in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _numeric(_text: str) -> bool:
    return True


# One pass finds the runs of digits and separators every numeric detector needs; they then
# run on a small window around each run (extended left over an IBAN's letters and a
# leading '+' or '('), not over the whole text.
CANDIDATE = re.compile(r"\d[\d .()/-]{5,}\d")
_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")


def candidate_windows(text: str) -> list[tuple[int, str]]:
    """(offset, window) around every digit run long enough to hold a numeric finding."""
    windows: list[tuple[int, str]] = []
    last_end = 0
    for m in CANDIDATE.finditer(text):
        start, end = m.span()
        ws = start
        while ws > last_end and start - ws < 34 and text[ws - 1] in _IBAN_CHARS:
            ws -= 1
        ws = max(ws - 2, 0)
        end = min(end + 2, len(text))
        windows.append((ws, text[ws:end]))
        last_end = m.end()
    return windows


def _any_of(*needles: str) -> Callable[[str], bool]:
    return lambda text: any(n in text for n in needles)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "secrets",
        "SECRET",
        re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}"),
        _any_of("sk-"),
    ),
    Detector(
        "secrets",
        "SECRET",
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        _any_of("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    Detector(
        "secrets",
        "SECRET",
        re.compile(
            r"(?i:aws_?secret_?access_?key)[\"']?\s{0,5}[:=]\s{0,5}[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        _any_of("ecret", "ECRET"),
        group=1,
    ),
    Detector(
        "secrets",
        "SECRET",
        re.compile(r"(?<![\w])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
        _any_of("gh", "github_pat_"),
    ),
    Detector(
        "secrets",
        "SECRET",
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        _any_of("eyJ"),
    ),
    Detector(
        "secrets",
        "SECRET",
        re.compile(r"(?i:bearer)\s{1,5}([A-Za-z0-9._~+/-]{16,}=*)"),
        _any_of("earer", "EARER"),
        group=1,
    ),
    Detector(
        "email",
        "EMAIL",
        re.compile(
            r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![\w-])"
        ),
        _any_of("@"),
    ),
    Detector(
        "iban",
        "IBAN",
        re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])"),
        _numeric,
        iban_valid,
        numeric=True,
    ),
    Detector(
        "credit_card",
        "CREDIT_CARD",
        re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"),
        _numeric,
        _card_valid,
        numeric=True,
    ),
    Detector(
        "ssn",
        "SSN",
        re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"),
        _numeric,
        numeric=True,
    ),
    Detector(
        "phone",
        "PHONE",
        re.compile(
            r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?>(?:[ .-]?\(?\d{1,4}\)?){2,6})(?![\w])"
            r"|(?<![\w-])(?:\(\d{3}\) ?|\d{3}[.\- ])\d{3}[.\- ]\d{4}(?![\w-])"
        ),
        _numeric,
        _phone_valid,
        numeric=True,
    ),
    Detector(
        "ip_address",
        "IP_ADDRESS",
        re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)"),
        _numeric,
        numeric=True,
    ),
    Detector(
        "ip_address",
        "IP_ADDRESS",
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        lambda text: "::" in text or text.count(":") >= 7,
        _ipv6_valid,
    ),
)
