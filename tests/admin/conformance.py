"""Run schemathesis against a live Admin API and collect every way an answer disagrees with
/openapi.json: schemathesis 4's conformance checks plus Kong's error shape on every 4xx.

Every generated case runs (no shrinking, no stop at the first failure) so that one run lists every
mismatch; mismatches are grouped by operation and kind, each with one request that shows it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "fuzz-admin-token"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, positive_data_acceptance]
# Examples per operation and generation mode: TOLLWAY_TEST_FUZZ_EXAMPLES raises it for a long run.
EXAMPLES_ENV = "TOLLWAY_TEST_FUZZ_EXAMPLES"


def examples(default: int) -> int:
    return int(os.environ.get(EXAMPLES_ENV, default))


def kong_shape_problem(response: requests.Response) -> str | None:
    """What is wrong with a 4xx's body as Kong's error shape (JSON with a "message"), or None."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return f"{response.status_code} without a message: {response.text[:200]}"
    return None


@dataclass
class Run:
    """What one run tried and what disagreed: (operation, kind) -> how many, and one example."""

    operations: int = 0
    cases: int = 0
    excused: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    mismatches: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, operation: str, kind: str, example: str) -> None:
        self.mismatches.setdefault((operation, kind), []).append(example)

    def report(self) -> str:
        lines = [f"{len(self.mismatches)} mismatches over {self.cases} cases on {self.operations} operations "
                 f"({self.excused} answers excused, see `excused`)"]
        for (operation, kind), examples_seen in sorted(self.mismatches.items()):
            lines.append(f"- {operation}: {kind} ({len(examples_seen)}x)\n    {examples_seen[0]}")
        slowest = sorted(self.seconds.items(), key=lambda item: -item[1])[:8]
        lines.append("slowest: " + ", ".join(f"{op} {took:.1f} s" for op, took in slowest))
        return "\n".join(lines)


# Kong's database error codes for a reference that names no entity: "foreign key violation" (an id)
# and "foreign keys unresolved" (a name). A schema says what an id or name looks like, not which exist,
# so a well-formed request that names a missing entity is rightly refused with 400.
MISSING_REFERENCE = {4, 13}
# The same for a filter of a listing (GET /invoices?consumer=x): Kong's 400 "invalid options", each
# option's message "no <entity> 'x'".
INVALID_OPTIONS = 11
# Likewise an id that is already taken (hypothesis draws the same UUIDs again): Kong's 400 code 3.
TAKEN_ID = 3
# What a graduated or volume charge's tiers must also meet: up_to set on every tier but the last,
# null on the last, increasing. JSON Schema cannot compare an array's items with each other.
TIER_ORDER = ("must be set on every tier but the last", "must be null on the last tier",
              "must be greater than the previous tier's up_to")


def _missing_only(options: object) -> bool:
    return isinstance(options, dict) and bool(options) and all(
        isinstance(message, str) and message.startswith("no ") for message in options.values())


def _tier_order_only(fields: object) -> bool:
    tiers = fields.get("tiers") if isinstance(fields, dict) and set(fields) == {"tiers"} else None
    return isinstance(tiers, list) and any(tiers) and all(
        problem is None or isinstance(problem, dict) and set(problem) == {"up_to"}
        and isinstance(problem["up_to"], str) and problem["up_to"].startswith(TIER_ORDER) for problem in tiers)


def excused(case: schemathesis.Case, response: requests.Response, failure: Exception) -> bool:
    """Whether a reported mismatch is one that no OpenAPI document can remove, each named:
    - valid data refused because it names an entity that does not exist (MISSING_REFERENCE, or
      INVALID_OPTIONS for a listing's filter) or gives an id that is taken (TAKEN_ID);
    - valid charge tiers refused for their order (TIER_ORDER);
    - GET /consumers?custom_id=x with a malformed size, offset or tags answered 200: Kong's
      /consumers answers the custom_id filter and ignores paging (kong/api/routes/consumers.lua);
    - a multipart body whose invalid part is a None: schemathesis sends it as the text "null",
      which is a valid string (a tag, a method) once sent."""
    kind = type(failure).__name__
    try:
        body = response.json()
    except ValueError:
        body = None
    if kind == "RejectedPositiveData" and response.status_code == 400 and isinstance(body, dict):
        if body.get("code") == INVALID_OPTIONS and _missing_only(body.get("options")):
            return True
        return body.get("code") in (*MISSING_REFERENCE, TAKEN_ID) or \
            body.get("code") == 2 and _tier_order_only(body.get("fields"))
    forms = ("multipart/form-data", "application/x-www-form-urlencoded")
    if kind == "AcceptedNegativeData" and case.media_type in forms and isinstance(case.body, dict) and (
            None in case.body.values() or "violates `type`" in str(failure)):
        return True
    named = re.search(r"Invalid component: \S", str(failure))
    if kind == "AcceptedNegativeData" and case.method == "GET" and not named:
        declared = {p.name for p in case.operation.query}
        return isinstance(case.query, dict) and bool(set(case.query) - declared)
    if kind == "AcceptedNegativeData" and case.operation.label == "GET /consumers":
        return isinstance(case.query, dict) and isinstance(case.query.get("custom_id"), str) and \
            case.query["custom_id"] != "" and response.status_code == 200
    return False


def _describe(case: schemathesis.Case, response: requests.Response) -> str:
    body = case.body if not isinstance(case.body, bytes) else case.body[:100]
    query = f"?{case.query}" if case.query else ""
    return (f"{case.method} {case.formatted_path}{query} {case.media_type or ''} {body!r:.300} -> "
            f"{response.status_code} {response.text[:300]}")


def register_offsets(base: str, session: requests.Session) -> None:
    """The document's offset formats, drawn from real pages: an offset is an opaque token that only a
    previous page gives (a made-up one is Kong's 400 invalid offset), so valid ones are taken from
    pages of one entity each of every listing that has two or more."""
    tokens: dict[str, list[str]] = {"entities-offset": [], "tags-offset": []}
    for path in session.get(f"{base}/endpoints").json()["data"]:
        kind = "tags-offset" if path == "/tags" else "entities-offset"
        if "{" in path or path.count("/") != 1 or path in ("/", "/status", "/endpoints", "/openapi.json"):
            continue
        page = session.get(f"{base}{path}", params={"size": 1})
        if not page.headers.get("Content-Type", "").startswith("application/json"):
            continue  # a page of the dashboard, the metrics' text
        offset = page.json().get("offset")
        if offset:
            tokens[kind].append(offset)
    for kind, found in tokens.items():
        assert found, f"no listing gave a {kind}: seed more entities"
        schemathesis.openapi.format(kind, st.sampled_from(sorted(found)))


def conform(base: str, session: requests.Session, max_examples: int,
            select: Callable[[schemathesis.APIOperation], bool] = lambda _op: True) -> Run:
    """Fuzz every selected operation of base's /openapi.json, positive and negative inputs."""
    register_offsets(base, session)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", headers=dict(session.headers))
    run = Run()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not select(operation):
            continue
        run.operations += 1
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @hypothesis_settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            label = case.operation.label
            run.cases += 1
            response = case.call(base_url=base, session=session, timeout=10)
            problem = kong_shape_problem(response)
            if problem is not None:
                run.add(label, "Kong error shape", problem)
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    if excused(case, response, failure):
                        run.excused += 1
                        continue
                    mode = case.meta.generation.mode.value if case.meta else "?"
                    component = [line for line in failure.message.splitlines() if "Invalid component" in line]
                    run.add(label, f"{failure.title} [{mode}]", _describe(case, response) + "".join(component))

        started = time.monotonic()
        try:
            fuzz()
        except Exception as exc:  # the document itself cannot be generated from: a mismatch too
            run.add(operation.label, "cannot generate", f"{type(exc).__name__}: {exc}"[:500])
        run.seconds[operation.label] = time.monotonic() - started
    return run
