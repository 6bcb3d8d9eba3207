"""The hostile requests of ``test_hostile.py``, by group: each a request sent as it is (raw
bytes, raw headers, raw query), with the exact answer expected where one is (status, code).

``{job}`` in a path or query stands for a finished job's id, ``{JOB}`` for it in upper case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.models import MAX_JSON_DEPTH, MAX_SAFE_INT
from supervisor.api.limits import MAX_EVENT_SEQ

MAX_BODY = 256 * 1024
"""The body limit the target supervisor runs with (``FLEET_MAX_BODY_BYTES``)."""


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int | None = None
    code: str | None = None
    content: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    params: str = ""
    """A raw query string (sent as it is, so odd encodings survive)."""


def _h(headers: dict[str, str | bytes] | None) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in (headers or {}).items():
        out.append((name.encode(), value if isinstance(value, bytes) else value.encode("latin-1")))
    return out


def post(
    name: str,
    body: bytes | str | Any,
    status: int | None = None,
    code: str | None = None,
    *,
    content_type: str | None = "application/json",
    headers: dict[str, str | bytes] | None = None,
    path: str = "/v1/jobs",
    params: str = "",
) -> Case:
    """A POST whose body is sent as is (bytes or str) or JSON-encoded (anything else)."""
    if isinstance(body, str):
        raw = body.encode()
    elif isinstance(body, bytes):
        raw = body
    else:
        raw = json.dumps(body).encode()
    hs = {"content-type": content_type} if content_type else {}
    return Case(name, "POST", path, status, code, raw, _h({**hs, **(headers or {})}), params)


def get(
    name: str,
    path: str,
    status: int | None = None,
    code: str | None = None,
    *,
    params: str = "",
    headers: dict[str, str | bytes] | None = None,
    method: str = "GET",
) -> Case:
    return Case(name, method, path, status, code, None, _h(headers), params)


def nested(depth: int) -> str:
    """A JSON body whose deepest object is at ``depth`` (the body itself is level 1)."""
    return '{"capability":"noop","input":' + '{"a":' * (depth - 2) + "{}" + "}" * (depth - 2) + "}"


def job(**fields: Any) -> dict[str, Any]:
    return {"capability": "noop", **fields}


BAD = (400, "BAD_REQUEST")
INVALID = (422, "VALIDATION_ERROR")
GONE = (404, "JOB_NOT_FOUND")
ACCEPTED = (202, None)
NOT_JSON = (415, "UNSUPPORTED_MEDIA_TYPE")

TEXT = [
    post(
        "lone high surrogate in a label",
        b'{"capability":"noop","labels":{"x":"\\ud83d"}}',
        *INVALID,
    ),
    post(
        "lone low surrogate in a label key",
        b'{"capability":"noop","labels":{"\\udc00":"x"}}',
        *INVALID,
    ),
    post(
        "surrogate deep in input",
        b'{"capability":"noop","input":{"a":[1,{"b":"x\\udbff"}]}}',
        *INVALID,
    ),
    post("surrogate in an input key", b'{"capability":"noop","input":{"\\ud800":1}}', *INVALID),
    post("surrogate in capability", b'{"capability":"noop\\ud83d"}', *INVALID),
    post(
        "surrogate in idempotency_key",
        b'{"capability":"noop","idempotency_key":"\\udfff"}',
        *INVALID,
    ),
    post("surrogate in worker", b'{"capability":"noop","worker":"\\ud83d"}', *INVALID),
    post("surrogate in an unknown field name", b'{"capability":"noop","\\ud83d":1}', *INVALID),
    post(
        "reversed surrogate pair",
        b'{"capability":"noop","labels":{"x":"\\ude00\\ud83d"}}',
        *INVALID,
    ),
    post("surrogate as the whole body", b'"\\ud83d"', *INVALID),
    post(
        "paired surrogates are one character",
        b'{"capability":"noop","labels":{"x":"\\ud83d\\ude00"}}',
        *ACCEPTED,
    ),
    post(
        "escaped backslash is not an escape",
        b'{"capability":"noop","labels":{"x":"\\\\ud83d"}}',
        *ACCEPTED,
    ),
    post(
        "NUL and control characters are characters",
        b'{"capability":"noop","input":{"x":"\\u0000\\u001b"}}',
        *ACCEPTED,
    ),
    post("raw UTF-8 emoji", '{"capability":"noop","labels":{"é":"😀"}}', *ACCEPTED),
    post("invalid UTF-8 byte", b'{"capability":"noop","labels":{"x":"\xff"}}', *BAD),
    post(
        "UTF-8-encoded surrogate (CESU)",
        b'{"capability":"noop","labels":{"x":"\xed\xa0\xbd"}}',
        *BAD,
    ),
    post("overlong UTF-8", b'{"capability":"noop","labels":{"x":"\xc0\xaf"}}', *BAD),
    post("UTF-8 byte order mark", b'\xef\xbb\xbf{"capability":"noop"}', *BAD),
    post("UTF-16 JSON", '{"capability":"noop"}'.encode("utf-16"), *BAD),
    post("Latin-1 JSON", '{"capability":"noop","labels":{"x":"é"}}'.encode("latin-1"), *BAD),
    post("truncated JSON", b'{"capability":"noop"', *BAD),
    post("trailing garbage", b'{"capability":"noop"} x', *BAD),
    post("two documents", b'{"capability":"noop"}{"capability":"noop"}', *BAD),
    post("single quotes", b"{'capability':'noop'}", *BAD),
    post("comment", b'{"capability":"noop" /* hi */}', *BAD),
    post("trailing comma", b'{"capability":"noop",}', *BAD),
    post("empty body", b"", *INVALID),
    post("whitespace body", b"  \n ", *BAD),
    post("null body", b"null", *INVALID),
    post("array body", b"[1,2]", *INVALID),
    post("string body", b'"noop"', *INVALID),
    post("number body", b"7", *INVALID),
    post("duplicate key", b'{"capability":"noop","capability":"steps"}', *INVALID),
    post(
        "duplicate key deep in input",
        b'{"capability":"noop","input":{"a":{"b":1,"b":2}}}',
        *INVALID,
    ),
]

STRUCTURE = [
    post(f"nested {MAX_JSON_DEPTH} deep (the limit)", nested(MAX_JSON_DEPTH), *ACCEPTED),
    post(f"nested {MAX_JSON_DEPTH + 1} deep", nested(MAX_JSON_DEPTH + 1), *INVALID),
    post("nested 256 deep", nested(256), *INVALID),
    post("nested 1,000 deep", nested(1000), *INVALID),
    post(
        "arrays nested 100,000 deep",
        '{"capability":"noop","input":{"a":' + "[" * 100_000 + "]" * 100_000 + "}}",
        *INVALID,
    ),
    post("unclosed arrays 100,000 deep", "[" * 100_000, status=None),
    post("NaN", b'{"capability":"noop","input":{"x":NaN}}', *BAD),
    post("Infinity", b'{"capability":"noop","input":{"x":Infinity}}', *BAD),
    post("-Infinity", b'{"capability":"noop","input":{"x":[-Infinity]}}', *BAD),
    post("NaN as timeout_s", b'{"capability":"noop","timeout_s":NaN}', *BAD),
    post("nan lower case", b'{"capability":"noop","input":{"x":nan}}', *BAD),
    post("float overflow", b'{"capability":"noop","input":{"x":1e400}}', *INVALID),
    post("negative float overflow", b'{"capability":"noop","input":{"x":[-1e999]}}', *INVALID),
    post("float underflow is zero", b'{"capability":"noop","input":{"x":1e-400}}', *ACCEPTED),
    post(
        "largest safe integer", f'{{"capability":"noop","input":{{"x":{MAX_SAFE_INT}}}}}', *ACCEPTED
    ),
    post(
        "smallest safe integer",
        f'{{"capability":"noop","input":{{"x":{-MAX_SAFE_INT}}}}}',
        *ACCEPTED,
    ),
    post("2**53", f'{{"capability":"noop","input":{{"x":{2**53}}}}}', *INVALID),
    post("-(2**53)", f'{{"capability":"noop","input":{{"x":{-(2**53)}}}}}', *INVALID),
    post("10**30", f'{{"capability":"noop","input":{{"x":{10**30}}}}}', *INVALID),
    post("5,000-digit integer", '{"capability":"noop","input":{"x":' + "9" * 5000 + "}}", *INVALID),
    post(
        "100,000-digit integer",
        '{"capability":"noop","input":{"x":' + "1" * 100_000 + "}}",
        *INVALID,
    ),
    post("long fraction", '{"capability":"noop","input":{"x":0.' + "1" * 50_000 + "}}", *ACCEPTED),
    post("huge exponent", b'{"capability":"noop","input":{"x":1e99999999999}}', *INVALID),
    post("leading zeros", b'{"capability":"noop","input":{"x":007}}', *BAD),
    post("hex number", b'{"capability":"noop","input":{"x":0x10}}', *BAD),
    post("plus sign", b'{"capability":"noop","input":{"x":+1}}', *BAD),
    post(
        "100,000 small values",
        '{"capability":"noop","input":{"x":[' + ",".join(["0"] * 100_000) + "]}}",
        *ACCEPTED,
    ),
    post("10,000 keys", json.dumps(job(input={f"k{i}": i for i in range(10_000)})), *ACCEPTED),
    post(
        "one key over the body limit",
        json.dumps(job(input={"x": "a" * MAX_BODY})),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
]

FIELDS = [
    *(
        post(f"timeout_s {v}", f'{{"capability":"noop","timeout_s":{v}}}', *INVALID)
        for v in ["0", "-1", "1e-320", "0.0009", "86401", "1e308", "true", '"30"', "[30]", "{}"]
    ),
    *(
        post(f"max_attempts {v}", f'{{"capability":"noop","max_attempts":{v}}}', *INVALID)
        for v in ["0", "21", "-1", "1.5", "3.0", "true", '"3"', str(2**63), "[]"]
    ),
    post("timeout_s at its floor", job(timeout_s=0.001, max_attempts=1), *ACCEPTED),
    post("max_attempts at its ceiling", job(max_attempts=20), *ACCEPTED),
    post("null for an optional field is its default", job(max_attempts=None), *ACCEPTED),
    post("timeout_s a day", job(timeout_s=86_400, max_attempts=1), *ACCEPTED),
    *(
        post(f"capability {v!r}", json.dumps({"capability": v}), *INVALID)
        for v in ["", "a" * 201, 123, None, ["noop"], {"a": 1}, "no op", "noop\n", "nöop", True]
    ),
    post("missing capability", {"input": {}}, *INVALID),
    post("input is a list", job(input=[1]), *INVALID),
    post("input is a string", job(input="x"), *INVALID),
    post("input is null", job(input=None), *INVALID),
    post("labels with a number", job(labels={"a": 1}), *INVALID),
    post("labels is a list", job(labels=["a"]), *INVALID),
    post("labels with null", job(labels={"a": None}), *INVALID),
    post("33 labels", job(labels={f"l{i}": "v" for i in range(33)}), *INVALID),
    post("idempotency_key empty", job(idempotency_key=""), *INVALID),
    post("idempotency_key 201 characters", job(idempotency_key="k" * 201), *INVALID),
    post("idempotency_key with a newline", job(idempotency_key="a\nb"), *INVALID),
    post("worker empty", job(worker=""), *INVALID),
    post("worker unknown", job(worker="ghost"), *INVALID),
    post("unknown field", job(priority=1), *INVALID),
    post("unknown capability", {"capability": "nope"}, 422, "UNKNOWN_CAPABILITY"),
    post(
        "input breaks the schema",
        {"capability": "steps", "input": {"n": "x"}},
        422,
        "INVALID_INPUT",
    ),
    post(
        "input with a huge wrong value",
        {"capability": "steps", "input": {"n": "x" * 100_000}},
        422,
        "INVALID_INPUT",
    ),
    post(
        "input out of the schema's range",
        {"capability": "steps", "input": {"n": 10**6}},
        422,
        "INVALID_INPUT",
    ),
    post("wait=nan", job(), *INVALID, params="wait=nan"),
    post("wait=inf", job(), *INVALID, params="wait=inf"),
    post("wait=-1", job(), *INVALID, params="wait=-1"),
    post("wait=61", job(), *INVALID, params="wait=61"),
    post("wait=1e400", job(), *INVALID, params="wait=1e400"),
]

HEADERS = [
    post("Idempotency-Key with a tab", job(), *INVALID, headers={"Idempotency-Key": "a\tb"}),
    post("Idempotency-Key with DEL", job(), *INVALID, headers={"Idempotency-Key": "a\x7fb"}),
    post("Idempotency-Key with a NUL", job(), *INVALID, headers={"Idempotency-Key": b"a\x00b"}),
    post("Idempotency-Key with Latin-1", job(), *INVALID, headers={"Idempotency-Key": b"caf\xe9"}),
    post(
        "Idempotency-Key with UTF-8", job(), *INVALID, headers={"Idempotency-Key": "ключ".encode()}
    ),
    post("Idempotency-Key 201 characters", job(), *INVALID, headers={"Idempotency-Key": "k" * 201}),
    post("Idempotency-Key 100 kB", job(), *INVALID, headers={"Idempotency-Key": "k" * 100_000}),
    post(
        "Idempotency-Key differs from the body's",
        job(idempotency_key="a"),
        *INVALID,
        headers={"Idempotency-Key": "b"},
    ),
    post("Idempotency-Key empty means none", job(), *ACCEPTED, headers={"Idempotency-Key": ""}),
    *(
        get(f"X-Correlation-ID {name}", "/v1/jobs", *INVALID, headers={"X-Correlation-ID": value})
        for name, value in [
            ("with a space", "a b"),
            ("with a tab", "a\tb"),
            ("with DEL", "a\x7f"),
            ("with a NUL", b"a\x00"),
            ("with Latin-1", b"\xff\xfe"),
            ("129 characters", "c" * 129),
            ("100 kB", "c" * 100_000),
        ]
    ),
    post(
        "X-Correlation-ID refused before the body is read",
        job(),
        *INVALID,
        headers={"X-Correlation-ID": "a b"},
    ),
    get(
        "X-Correlation-ID refused on probes too",
        "/healthz",
        *INVALID,
        headers={"X-Correlation-ID": "a\x01"},
    ),
    get(
        "X-Correlation-ID 128 visible characters",
        "/v1/jobs",
        200,
        headers={"X-Correlation-ID": "!~" * 64},
    ),
    get("X-Correlation-ID empty is generated", "/v1/jobs", 200, headers={"X-Correlation-ID": ""}),
    *(
        get(
            f"Last-Event-ID {value!r}",
            "/v1/jobs/{job}/events",
            *INVALID,
            headers={"Last-Event-ID": value},
        )
        for value in [
            "²".encode(),
            "-1",
            "1e25",
            "nan",
            "1.0",
            "abc",
            "0x1",
            "١".encode(),
            "1" * 16,
            "1 2",
        ]
    ),
    get(
        "Last-Event-ID empty means from the start",
        "/v1/jobs/{job}/events",
        200,
        headers={"Last-Event-ID": ""},
    ),
    get("Last-Event-ID 1", "/v1/jobs/{job}/events", 200, headers={"Last-Event-ID": "1"}),
    get(
        "Last-Event-ID with leading zeros",
        "/v1/jobs/{job}/events",
        200,
        headers={"Last-Event-ID": "0001"},
    ),
    post(
        "Content-Length with 5,000 digits",
        job(),
        413,
        "PAYLOAD_TOO_LARGE",
        headers={"content-length": "9" * 5000},
    ),
    get("an unrelated 100 kB header", "/v1/jobs", 200, headers={"X-Junk": "j" * 100_000}),
    get(
        "a bearer token nobody asked for", "/v1/jobs", 200, headers={"Authorization": "Bearer \x01"}
    ),
]

QUERIES = [
    *(
        get(f"cursor={value}", "/v1/jobs", *INVALID, params=f"cursor={value}")
        for value in [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e25",
            "-1",
            "abc",
            "",
            "%201",
            "1_000",
            "0x10",
            "9" * 100,
            "1.5e3",
            "%00",
            "1.",
            ".5",
        ]
    ),
    get("cursor=0", "/v1/jobs", 200, params="cursor=0"),
    get("cursor far in the future", "/v1/jobs", 200, params="cursor=9999999999999999.5"),
    *(
        get(f"limit={v}", "/v1/jobs", *INVALID, params=f"limit={v}")
        for v in ["0", "501", "-1", "nan", "1e3", "", "1.5", "x"]
    ),
    get("status bogus", "/v1/jobs", *INVALID, params="status=bogus"),
    get("capability 201 characters", "/v1/jobs", *INVALID, params="capability=" + "c" * 201),
    get("capability in Unicode", "/v1/jobs", 200, params="capability=%F0%9F%98%80"),
    get("capability invalid UTF-8", "/v1/jobs", 200, params="capability=%ED%A0%BD"),
    get("repeated parameters", "/v1/jobs", params="status=queued&status=failed&limit=1&limit=2"),
    get(
        "a query of 5,000 parameters",
        "/v1/jobs",
        200,
        params="&".join(f"p{i}=1" for i in range(5_000)),
    ),
    *(
        get(f"after={v}", "/v1/jobs/{job}/events", *INVALID, params=f"after={v}")
        for v in [
            "1e25",
            "-1",
            "nan",
            "inf",
            str(MAX_EVENT_SEQ + 1),
            "99999999999999999999999",
            "",
            "1.5",
            "x",
        ]
    ),
    get("after=0", "/v1/jobs/{job}/events", 200, params="after=0"),
    get(
        "after and Last-Event-ID together",
        "/v1/jobs/{job}/events",
        200,
        params="after=1",
        headers={"Last-Event-ID": "2"},
    ),
    get("wait=nan on a job", "/v1/jobs/{job}", *INVALID, params="wait=nan"),
    get("wait=1e400 on a job", "/v1/jobs/{job}", *INVALID, params="wait=1e400"),
    get("wait=-0 on a job", "/v1/jobs/{job}", 200, params="wait=-0"),
    get("dead-letters limit=0", "/v1/dead-letters", *INVALID, params="limit=0"),
    get("dead-letters limit=1e9", "/v1/dead-letters", *INVALID, params="limit=1000000000"),
]

_BAD_IDS = [
    "{job}:events",
    "{job}%3Aevents",
    "{job}:cancel",
    "..%2F..%2Fhealthz",
    "%2E%2E",
    "a%2Fb",
    "%00",
    "*",
    "{job}%20",
    "{job}%0A",
    "%20{job}",
    "{JOB}",
    "é",
    "%F0%9F%98%80",
    "%ED%A0%BD",
    "x" * 10_000,
    "0" * 31,
    "0" * 33,
    "g" * 32,
    "-1",
    "does-not-exist",
]

PATHS = [
    *(get(f"GET job {i}: {v[:24]}", f"/v1/jobs/{v}", status=404) for i, v in enumerate(_BAD_IDS)),
    get("a Redis key name as a job id", "/v1/jobs/{job}:events", *GONE),
    get("a 10 kB job id", "/v1/jobs/" + "x" * 10_000, *GONE),
    get("an upper-case job id", "/v1/jobs/{JOB}", *GONE),
    get("an encoded slash is a slash", "/v1/jobs/{job}%2Fevents", status=None),
    *(
        get(f"events {i}: {v[:24]}", f"/v1/jobs/{v}/events", status=404)
        for i, v in enumerate(_BAD_IDS)
    ),
    *(
        post(f"cancel {i}: {v[:24]}", b"", status=404, path=f"/v1/jobs/{v}/cancel")
        for i, v in enumerate(_BAD_IDS)
    ),
    *(
        post(f"redrive {i}: {v[:24]}", b"", status=404, path=f"/v1/dead-letters/{v}/redrive")
        for i, v in enumerate(_BAD_IDS)
    ),
    get("a well-shaped id nobody minted", "/v1/jobs/" + "0" * 32, *GONE),
    get(
        "redrive a job that is not dead",
        "/v1/dead-letters/{job}/redrive",
        method="POST",
        status=404,
    ),
    get("cancel a finished job", "/v1/jobs/{job}/cancel", 409, "JOB_FINISHED", method="POST"),
    get("dot segments", "/v1/jobs/../jobs/./{job}", status=None),
    get("double slash", "/v1//jobs", 404, "NOT_FOUND"),
    get("trailing path", "/v1/jobs/{job}/events/more", 404, "NOT_FOUND"),
    get("no such route", "/v2/jobs", 404, "NOT_FOUND"),
    get("a 60 kB path", "/" + "p" * 60_000, 404, "NOT_FOUND"),
]

METHODS = [
    get("DELETE a job", "/v1/jobs/{job}", 405, "METHOD_NOT_ALLOWED", method="DELETE"),
    get("PUT jobs", "/v1/jobs", 405, "METHOD_NOT_ALLOWED", method="PUT"),
    get("PATCH a job", "/v1/jobs/{job}", 405, "METHOD_NOT_ALLOWED", method="PATCH"),
    get("GET cancel", "/v1/jobs/{job}/cancel", 405, "METHOD_NOT_ALLOWED"),
    get("POST healthz", "/healthz", 405, "METHOD_NOT_ALLOWED", method="POST"),
    get("HEAD jobs", "/v1/jobs", method="HEAD"),
    get("OPTIONS jobs", "/v1/jobs", method="OPTIONS"),
    get("TRACE jobs", "/v1/jobs", method="TRACE"),
    post(
        "form-encoded body",
        b"capability=noop",
        *NOT_JSON,
        content_type="application/x-www-form-urlencoded",
    ),
    post(
        "multipart body",
        b'--b\r\nContent-Disposition: form-data; name="capability"\r\n\r\nnoop\r\n--b--',
        *NOT_JSON,
        content_type="multipart/form-data; boundary=b",
    ),
    post(
        "XML body",
        b"<job><capability>noop</capability></job>",
        *NOT_JSON,
        content_type="application/xml",
    ),
    post("gzip claimed, plain sent", job(), *ACCEPTED, headers={"content-encoding": "gzip"}),
    post(
        "gzip sent", b"\x1f\x8b\x08\x00\x00\x00\x00\x00", *BAD, headers={"content-encoding": "gzip"}
    ),
    # A cross-site page can send these without a CORS preflight: refused, JSON or not.
    post("JSON as text/plain", job(), *NOT_JSON, content_type="text/plain"),
    post("JSON with no content type", job(), *NOT_JSON, content_type=None),
    post("JSON as application/*+json", job(), *ACCEPTED, content_type="application/fleet+json"),
    post("JSON with a charset", job(), *ACCEPTED, content_type="Application/JSON; charset=utf-8"),
    post(
        "latin-1 charset declared",
        '{"capability":"noop","labels":{"x":"é"}}'.encode("latin-1"),
        *BAD,
        content_type="application/json; charset=latin-1",
    ),
    post("a body on cancel", b"\xff{", 409, "JOB_FINISHED", path="/v1/jobs/{job}/cancel"),
    post("a body on healthz", b"[" * 1000, 405, "METHOD_NOT_ALLOWED", path="/healthz"),
]

REPEATS = [
    *(
        post(
            f"the poison request, again ({i})",
            b'{"capability":"noop","labels":{"x":"\\ud83d"}}',
            *INVALID,
        )
        for i in range(3)
    ),
    post("a keyed job", job(idempotency_key="repeat-1"), 202, None),
    post("the same keyed job (replayed)", job(idempotency_key="repeat-1"), 200, None),
    post(
        "the same key in the header (replayed)",
        job(),
        200,
        None,
        headers={"Idempotency-Key": "repeat-1"},
    ),
    post(
        "the same key, another body",
        job(idempotency_key="repeat-1", labels={"x": "y"}),
        409,
        "IDEMPOTENCY_CONFLICT",
    ),
    post(
        "the same key, a refused body",
        b'{"capability":"noop","idempotency_key":"repeat-1","x":NaN}',
        *BAD,
    ),
    *(get(f"list after the poison ({i})", "/v1/jobs", 200) for i in range(2)),
]

GROUPS: dict[str, list[Case]] = {
    "text": TEXT,
    "structure": STRUCTURE,
    "fields": FIELDS,
    "headers": HEADERS,
    "queries": QUERIES,
    "paths": PATHS,
    "methods": METHODS,
    "repeats": REPEATS,
}
