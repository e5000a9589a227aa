from __future__ import annotations

import pytest

from untrace_server.errors import ConfigError
from untrace_server.model import to_builtins
from untrace_server.pipeline.transformers import create
from untrace_server.pipeline.transformers.pii_detectors import iban_valid, luhn_valid

MUST_CATCH = [
    ("write to jane.doe+news@mail.example.co.uk today", "EMAIL"),
    ("call +44 20 7946 0958 now", "PHONE"),
    ("call +1 (415) 555-2671", "PHONE"),
    ("ring 0049 30 1234 5678", "PHONE"),
    ("office (212) 555-0147", "PHONE"),
    ("cell 212-555-0147", "PHONE"),
    ("visa 4111 1111 1111 1111 exp", "CREDIT_CARD"),
    ("amex 378282246310005", "CREDIT_CARD"),
    ("mc 5555-5555-5555-4444", "CREDIT_CARD"),
    ("ssn 123-45-6789", "SSN"),
    ("iban DE89 3704 0044 0532 0130 00", "IBAN"),
    ("iban GB82WEST12345698765432", "IBAN"),
    ("from 192.168.10.24.", "IP_ADDRESS"),
    ("v6 2001:db8:85a3::8a2e:370:7334 seen", "IP_ADDRESS"),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329", "IP_ADDRESS"),
    ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "SECRET"),
    ("key sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv", "SECRET"),
    ("aws AKIAIOSFODNN7EXAMPLE", "SECRET"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET"),
    ("gh ghp_" + "a1B2c3D4e5" * 4, "SECRET"),
    ("Authorization: Bearer abc.def-ghi_jkl~mno123", "SECRET"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "SECRET",
    ),
]

MUST_NOT_CATCH = [
    "order #123456789012 shipped",
    "order 4111111111111112 (fails Luhn)",
    "invoice 1234567890123456 (no card prefix)",
    "at 2024-01-15T10:30:00Z and 2024-01-15 10:30:00.123",
    "epoch 1700000000000 ms",
    "version 1.2.3, v1.2.3.4, 2.14.1-beta",
    "id 550e8400-e29b-41d4-a716-446655440000",
    "sha 3f786850e387550fdab836ed7e6dc881de23001b",
    "time 10:30:00 and ratio 3:2:1",
    "total $1,234.56 for 12 items",
    "ssn-shaped but invalid 000-12-3456 and 666-12-3456",
    "iban-shaped, bad checksum GB83 WEST 1234 5698 7654 32",
    "std::vector<int> and a::b",
    "ask me at the desk",
    "sk-short",
]


@pytest.fixture
def redactor():
    return create("pii_redaction", {})


@pytest.mark.parametrize(("text", "label"), MUST_CATCH)
def test_detects(redactor, text, label):
    out = redactor.redact(text)
    assert f"[REDACTED:{label}]" in out, out


@pytest.mark.parametrize("text", MUST_NOT_CATCH)
def test_leaves_alone(redactor, text):
    assert redactor.redact(text) == text


def test_luhn_and_iban_checks():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83WEST12345698765432")


def test_hash_mode_is_keyed_and_stable():
    a = create("pii_redaction", {"mode": "hash", "key": "k" * 16})
    b = create("pii_redaction", {"mode": "hash", "key": "other-key-123"})
    first = a.redact("mail ann@example.com")
    assert first.startswith("mail [EMAIL:") and "ann@" not in first
    assert a.redact("again ann@example.com") == "again " + first.removeprefix("mail ")
    assert b.redact("mail ann@example.com") != first
    with pytest.raises(ConfigError, match="needs a 'key'"):
        create("pii_redaction", {"mode": "hash"})


def test_scope_covers_messages_tools_prompt_response_and_configured_fields(make_trace):
    t = make_trace(
        request={
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "I am bob@example.com"}]},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"function": {"name": "lookup", "arguments": '{"ssn": "123-45-6789"}'}}
                    ],
                },
            ],
            "prompt": "call +1 415 555 2671",
        },
        response={"content": "card 4111 1111 1111 1111"},
        metadata={"userEmail": "eve@example.com", "other": "zed@example.com"},
    )
    red = create("pii_redaction", {"fields": ["$.metadata.userEmail"]})
    data = red.transform(to_builtins(t))
    req = data["request"]
    assert req["messages"][0]["content"][0]["text"] == "I am [REDACTED:EMAIL]"
    assert "[REDACTED:SSN]" in req["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert req["messages"][1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert req["prompt"] == "call [REDACTED:PHONE]"
    assert data["response"]["content"] == "card [REDACTED:CREDIT_CARD]"
    assert data["metadata"]["userEmail"] == "[REDACTED:EMAIL]"
    assert data["metadata"]["other"] == "zed@example.com"  # not configured


def test_detector_subset_and_unknown_detector():
    only_email = create("pii_redaction", {"detectors": ["email"]})
    assert only_email.redact("a@b.io 123-45-6789") == "[REDACTED:EMAIL] 123-45-6789"
    with pytest.raises(ConfigError, match="unknown PII detector"):
        create("pii_redaction", {"detectors": ["dna"]})


def test_no_catastrophic_time_on_adversarial_input(redactor):
    import time

    texts = [
        "a" * 20_000 + "@",
        "1 " * 10_000,
        "+1" + " 1" * 10_000 + "x",
        "a." * 10_000,
        ":" * 20_000,
    ]
    start = time.perf_counter()
    for text in texts:
        redactor.redact(text)
    assert time.perf_counter() - start < 2.0
