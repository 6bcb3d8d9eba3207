"""Signed worker registrations (shared.signing): every signed field is covered, time bounds it,
and only the right secret and fleet make a valid signature."""

from __future__ import annotations

import json

import pytest

from shared import WorkerRegistration
from shared.signing import (
    CLOCK_SKEW_S,
    check_registration,
    registration_message,
    sign_registration,
)

SECRET = "s" * 32
T0 = 1_800_000_000


def signed(**fields: object) -> WorkerRegistration:
    reg = WorkerRegistration(name="echo", url="http://10.0.0.5:8701/mcp", version="1.0.0")
    reg = reg.model_copy(update=fields)
    return sign_registration(reg, SECRET, fleet="fleet", ttl_s=15, at=T0)


def test_a_signed_registration_checks_inside_its_window() -> None:
    reg = signed()
    assert (reg.issued_at, reg.expires_at) == (T0, T0 + 15)
    assert reg.signature is not None and len(reg.signature) == 64
    assert check_registration(reg, SECRET, fleet="fleet", at=T0) is None
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 + 14.9) is None


def test_it_survives_the_json_round_trip_through_redis() -> None:
    reg = signed()
    again = WorkerRegistration.model_validate_json(reg.model_dump_json())
    assert check_registration(again, SECRET, fleet="fleet", at=T0 + 1) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "echo2"),
        ("url", "http://10.0.0.6:8701/mcp"),
        ("url", "http://10.0.0.5:8701/mcp/"),
        ("version", "1.0.1"),
        ("issued_at", T0 + 1),
        ("expires_at", T0 + 10_000),
    ],
)
def test_tampering_with_any_signed_field_breaks_the_signature(field: str, value: object) -> None:
    tampered = signed().model_copy(update={field: value})
    assert check_registration(tampered, SECRET, fleet="fleet", at=T0 + 1) == "bad_signature"


def test_the_wrong_secret_or_another_fleet_is_a_bad_signature() -> None:
    reg = signed()
    assert check_registration(reg, "t" * 32, fleet="fleet", at=T0 + 1) == "bad_signature"
    assert check_registration(reg, SECRET, fleet="other", at=T0 + 1) == "bad_signature"


@pytest.mark.parametrize("signature", ["", "00" * 32, "zz", "é" * 64])
def test_a_garbage_signature_is_bad(signature: str) -> None:
    reg = signed().model_copy(update={"signature": signature})
    expected = "unsigned" if not signature else "bad_signature"
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 + 1) == expected


def test_unsigned_and_partly_signed_registrations_are_unsigned() -> None:
    plain = WorkerRegistration(name="echo", url="http://10.0.0.5:8701/mcp")
    assert check_registration(plain, SECRET, fleet="fleet") == "unsigned"
    no_time = signed().model_copy(update={"expires_at": None})
    assert check_registration(no_time, SECRET, fleet="fleet", at=T0) == "unsigned"


def test_expiry_and_the_future_bound_replays() -> None:
    reg = signed()
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 + 15) == "expired"
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 + 86_400) == "expired"
    # Issued a little in the future (clock skew) passes; far in the future does not.
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 - CLOCK_SKEW_S) is None
    assert check_registration(reg, SECRET, fleet="fleet", at=T0 - CLOCK_SKEW_S - 1) == (
        "not_yet_valid"
    )


def test_the_message_is_canonical_json_of_the_signed_fields() -> None:
    message = json.loads(registration_message(signed(), fleet="f1"))
    assert message == {
        "v": 1,
        "purpose": "mcp-fleet/worker-registration",
        "fleet": "f1",
        "name": "echo",
        "url": "http://10.0.0.5:8701/mcp",
        "version": "1.0.0",
        "iat": T0,
        "exp": T0 + 15,
    }
    assert b" " not in registration_message(signed(), fleet="f1")
