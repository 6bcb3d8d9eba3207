"""``fleet doctor``: what stands between this CLI and a working fleet, one check per line.

The URL (checked when the settings are read: one with no scheme is exit 2 with the fix), the
supervisor answering ``/healthz`` and its version, the token (``/v1`` reads and submits), the
store (``/readyz``) and each worker, with the reason one is down.

Exit codes, from the table in ``fleet --help``: 0 every check passed; 4 the supervisor does not
answer; 5 the token is refused; 1 any other check failed (the store, a worker).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import typer

from supervisor.cli.base import Exit, JsonOpt, State, app, print_json, state
from supervisor.cli.hints import auth_hint, examples
from supervisor.cli.render import duration

__all__ = ["Check", "diagnose"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    code: Exit = Exit.FAILED
    """The exit code when this check fails."""

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def _error(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    try:
        err = response.json()["error"]
        return str(err["code"]), str(err.get("message", "")), dict(err.get("details") or {})
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{response.status_code}", response.text.strip()[:200], {}


def _auth_problem(response: httpx.Response) -> str | None:
    """What to do when ``response`` refused the token; None when it did not."""
    if response.status_code not in (401, 403):
        return None
    code, message, details = _error(response)
    return auth_hint(response.status_code, code, message, details) or f"{code}: {message}"


async def _supervisor(client: httpx.AsyncClient, url: str) -> list[Check]:
    from importlib.metadata import version

    try:
        response = await client.get("/healthz")
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        return [
            Check(
                "supervisor",
                False,
                f"no answer at {url}: {reason} (is it running? fleet supervisor, or fleet dev)",
                Exit.UNREACHABLE,
            )
        ]
    if response.status_code != 200:
        return [
            Check(
                "supervisor",
                False,
                f"{url}/healthz answered HTTP {response.status_code}: is this a fleet supervisor?",
                Exit.UNREACHABLE,
            )
        ]
    try:
        theirs = str(response.json().get("version") or "")
    except (ValueError, AttributeError):
        theirs = ""
    mine = version("mcp-fleet")
    shown = f"version {theirs}" if theirs else "version not reported (an older supervisor)"
    if theirs and theirs != mine:
        shown += f"; this CLI is {mine}"
    return [Check("supervisor", True, f"{url} answers, {shown}")]


async def _token(client: httpx.AsyncClient, st: State) -> Check:
    """Reading (``GET /v1/workers``) and submitting: a body-less submit is refused for its
    scope before its body is looked at, and otherwise for the body: nothing is queued."""
    read = await client.get("/v1/workers")
    problem = _auth_problem(read)
    if problem:
        return Check("token", False, problem, Exit.API_ERROR)
    if read.status_code != 200:
        code, message, _ = _error(read)
        return Check("token", False, f"GET /v1/workers: {code}: {message}", Exit.API_ERROR)
    write = await client.post(
        "/v1/jobs", content=b"{}", headers={"Content-Type": "application/json"}
    )
    problem = _auth_problem(write)
    sent = "accepted" if st.settings.token else "none sent, none needed"
    if problem:
        return Check("token", False, f"reads work, submits do not: {problem}", Exit.API_ERROR)
    return Check("token", True, f"{sent} (may read and submit jobs)")


async def _store(client: httpx.AsyncClient) -> Check:
    try:
        response = await client.get("/readyz")
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Check("store", False, f"/readyz did not answer: {exc}")
    if response.status_code == 200:
        return Check("store", True, "reachable (/readyz: ready)")
    if body.get("store") != "ok":
        return Check(
            "store",
            False,
            "unreachable: the supervisor cannot reach its store "
            "(check FLEET_REDIS_URL and that Redis runs)",
        )
    loops = ", ".join(f"{k} ({v})" for k, v in (body.get("loops") or {}).items())
    return Check("store", False, f"reachable, but background loops are down: {loops}")


def _workers(body: dict[str, Any]) -> list[Check]:
    now = time.time()
    checks = []
    for w in body.get("workers") or []:
        name = f"worker {w.get('name', '?')}"
        caps = len(w.get("capabilities") or [])
        if w.get("healthy"):
            checks.append(Check(name, True, f"{w.get('url')} healthy, {caps} capabilities"))
            continue
        since = w.get("down_since")
        how_long = f" for {duration(now - since)}" if since else ""
        why = w.get("down_reason") or w.get("error") or w.get("health") or "down"
        checks.append(Check(name, False, f"{w.get('url')} down{how_long}: {why}"))
    for r in body.get("refused") or []:
        checks.append(
            Check(f"worker {r.get('url')}", False, f"refused, never called: {r.get('reason')}")
        )
    if not checks:
        checks.append(
            Check(
                "workers",
                False,
                "none known: start one (fleet worker echo "
                "--port 8701) and list it in the supervisor's FLEET_WORKERS",
            )
        )
    return checks


async def diagnose(st: State) -> list[Check]:
    """Every check, in order; later ones are skipped when an earlier one makes them moot."""
    url = st.settings.url.rstrip("/")
    headers = {"Authorization": f"Bearer {st.settings.token}"} if st.settings.token else {}
    checks = [Check("url", True, f"{url} (from --url, FLEET_URL or the default)")]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0) as client:
        checks += await _supervisor(client, url)
        if not checks[-1].ok:
            return checks
        token = await _token(client, st)
        checks.append(token)
        checks.append(await _store(client))
        if token.ok:
            workers = await client.get("/v1/workers")
            checks += _workers(workers.json() if workers.status_code == 200 else {})
    return checks


@app.command(
    epilog=examples(
        "fleet doctor",
        "fleet --url http://10.0.0.5:8700 --token $TOKEN doctor",
        "fleet doctor --json | jq '.checks[] | select(.ok | not)'",
    )
)
def doctor(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Check the URL, the supervisor and its version, the token, the store and each worker.

    One line per check, ✓ or ✗ with the reason. Exit 0 when all pass; 4 the supervisor does
    not answer; 5 the token is refused; 1 another check failed (store, a worker down).
    """
    st = state(ctx)
    try:
        checks = asyncio.run(diagnose(st))
    except httpx.HTTPError as exc:  # the supervisor went away between two checks
        checks = [Check("supervisor", False, f"stopped answering: {exc}", Exit.UNREACHABLE)]
    failed = [c for c in checks if not c.ok]
    code = min((c.code for c in failed), key=_severity, default=Exit.OK)
    if st.wants_json(json_out):
        print_json(
            {
                "ok": not failed,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            }
        )
    else:
        for check in checks:
            st.out.print(check.line(), markup=False, highlight=False)
    raise typer.Exit(int(code))


def _severity(code: Exit) -> int:
    """The code of the failure that matters most: no supervisor, then the token, then the rest."""
    return {Exit.UNREACHABLE: 0, Exit.API_ERROR: 1}.get(code, 2)
