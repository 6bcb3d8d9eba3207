"""PyJWT (and the cryptography it brings, ~10 MB of the supervisor's RSS) is imported only by
a supervisor that verifies JWTs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.processes import ROOT, process_env

PROBE = """
import sys
from shared import SupervisorSettings
from supervisor.app import create_app
create_app(SupervisorSettings(redis_url="memory://", **{kw}))
print("jwt" in sys.modules)
"""


@pytest.mark.parametrize(
    ("settings", "imported"),
    [
        ("{}", False),
        (
            '{"jwks_url": "https://issuer.example/jwks", "jwt_issuer": "https://issuer.example"}',
            True,
        ),
    ],
)
def test_pyjwt_is_imported_only_to_verify_jwts(settings: str, imported: bool) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(kw=settings)],
        capture_output=True,
        text=True,
        check=True,
        env=process_env(),
        cwd=ROOT,
    ).stdout.split()
    assert out[-1] == str(imported)
