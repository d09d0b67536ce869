"""The consumer view of a trace code (GetOriginInfo): whether the code is genuine and active,
and where its goods come from - the origin only, never a later holder.

A code's own facts (state, batch) and its batch's facts (product, producer, certificate,
inspections, flags) are kept apart, as the cache keeps them: an event about a batch then
touches one entry, not one per code.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from agritrace_coding.domain.codes import CodeFormatError, parse
from agritrace_registry.domain.divisions import DivisionCatalog


class OriginStatus(StrEnum):
    GENUINE_ACTIVE = "GENUINE_ACTIVE"
    GENUINE_NOT_ACTIVE = "GENUINE_NOT_ACTIVE"
    VOID = "VOID"
    CONSUMED = "CONSUMED"
    UNKNOWN = "UNKNOWN"
    MALFORMED = "MALFORMED"


MESSAGES = {
    OriginStatus.GENUINE_ACTIVE: "Genuine: this code was issued by the national platform and "
                                 "is on traced goods.",
    OriginStatus.GENUINE_NOT_ACTIVE: "This code was issued by the national platform but has "
                                     "not been put on goods yet; ask the seller.",
    OriginStatus.VOID: "This code has been cancelled by its holder and is not valid on goods; "
                       "ask the seller or report it.",
    OriginStatus.CONSUMED: "These goods were split or repacked: the new packages carry new "
                           "codes. The origin below is that of the original goods.",
    OriginStatus.UNKNOWN: "This code was never issued by the national platform: the label may "
                          "be counterfeit. Please report it.",
    OriginStatus.MALFORMED: "This is not a valid trace code; check that it was typed "
                            "correctly.",
}


@dataclass(frozen=True)
class CodeFacts:
    """A code as the read model knows it."""

    code: str
    state: str  # ISSUED PRINTED ACTIVE CONSUMED VOID
    batch_id: str

    def to_cache(self) -> dict[str, Any]:
        return {"state": self.state, "batch_id": self.batch_id}

    @classmethod
    def from_cache(cls, code: str, value: dict[str, Any]) -> CodeFacts:
        return cls(code, str(value["state"]), str(value["batch_id"]))


@dataclass(frozen=True)
class Certificate:
    certificate_id: str
    producer_name: str
    contact_phone_masked: str
    issue_date: date | None
    commitment: str
    basis: str
    test_result: str

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Certificate:
        """From the read model's certificate JSON (flow's batch payload)."""
        issued = value.get("issue_date") or ""
        try:
            issue_date = date.fromisoformat(str(issued)) if issued else None
        except ValueError:
            issue_date = None
        return cls(
            certificate_id=str(value.get("certificate_id", "")),
            producer_name=str(value.get("producer_name", "")),
            # Only the masked phone is ever read, whatever else the JSON holds.
            contact_phone_masked=str(value.get("contact_phone_masked", "")),
            issue_date=issue_date, commitment=str(value.get("commitment", "")),
            basis=str(value.get("basis", "")), test_result=str(value.get("test_result", "")))


@dataclass(frozen=True)
class Inspections:
    passed: int = 0
    failed: int = 0
    last_result: str = ""
    last_at: datetime | None = None


@dataclass(frozen=True)
class BatchOrigin:
    """What a consumer may learn of a batch: its origin."""

    batch_id: str
    product_code: str
    product_name: str
    category: str
    producer_name: str
    producer_division: str
    origin_division: str
    production_date: date
    certificate: Certificate | None
    inspections: Inspections
    flags: tuple[str, ...]

    def to_cache(self) -> dict[str, Any]:
        certificate = None
        if self.certificate is not None:
            c = self.certificate
            certificate = {
                "certificate_id": c.certificate_id, "producer_name": c.producer_name,
                "contact_phone_masked": c.contact_phone_masked,
                "issue_date": c.issue_date.isoformat() if c.issue_date else "",
                "commitment": c.commitment, "basis": c.basis, "test_result": c.test_result}
        i = self.inspections
        return {
            "batch_id": self.batch_id, "product_code": self.product_code,
            "product_name": self.product_name, "category": self.category,
            "producer_name": self.producer_name, "producer_division": self.producer_division,
            "origin_division": self.origin_division,
            "production_date": self.production_date.isoformat(), "certificate": certificate,
            "inspections": [i.passed, i.failed, i.last_result,
                            i.last_at.isoformat() if i.last_at else ""],
            "flags": list(self.flags)}

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> BatchOrigin:
        passed, failed, last_result, last_at = value["inspections"]
        certificate = value.get("certificate")
        return cls(
            batch_id=value["batch_id"], product_code=value["product_code"],
            product_name=value["product_name"], category=value["category"],
            producer_name=value["producer_name"], producer_division=value["producer_division"],
            origin_division=value["origin_division"],
            production_date=date.fromisoformat(value["production_date"]),
            certificate=Certificate.from_json(certificate) if certificate else None,
            inspections=Inspections(int(passed), int(failed), str(last_result),
                                    datetime.fromisoformat(last_at) if last_at else None),
            flags=tuple(value["flags"]))


@dataclass(frozen=True)
class Place:
    """A division code with its name from province down ("" when unknown)."""

    code: str
    name: str


@dataclass(frozen=True)
class OriginView:
    code: str  # canonical; "" when malformed
    status: OriginStatus
    message: str
    origin: BatchOrigin | None = None
    producer_place: Place | None = None
    origin_place: Place | None = None

    @property
    def target_division(self) -> str:
        """What the query log files the scan under: where the goods come from (their origin
        county, else the producer's), else the code's province."""
        if self.origin is not None:
            return self.origin.origin_division or self.origin.producer_division
        return self.code[:2] if self.code else ""


# Pure functions on every scan's path, memoised: a hot code is scanned again and again, and
# a few thousand counties are the places of nearly every answer.
@functools.lru_cache(maxsize=16_384)
def canonical_code(text: str) -> str | None:
    """The canonical code, or None when `text` is not a well-formed code with a valid check
    character."""
    try:
        parsed = parse(text)
    except CodeFormatError:
        return None
    return parsed.code if parsed.check_valid else None


def status_of(facts: CodeFacts | None) -> OriginStatus:
    if facts is None:
        return OriginStatus.UNKNOWN
    if facts.state == "VOID":
        return OriginStatus.VOID
    if facts.state == "CONSUMED":
        return OriginStatus.CONSUMED
    # Binding a code to a batch is its activation; the two events may arrive in any order.
    if facts.state == "ACTIVE" or facts.batch_id:
        return OriginStatus.GENUINE_ACTIVE
    return OriginStatus.GENUINE_NOT_ACTIVE


@functools.lru_cache(maxsize=8_192)  # a catalogue never changes
def _place(catalog: DivisionCatalog, code: str) -> Place:
    return Place(code, catalog.name_path(code) if code and code in catalog else "")


def view(code: str, facts: CodeFacts | None, origin: BatchOrigin | None,
         catalog: DivisionCatalog) -> OriginView:
    """The answer for a well-formed code; the origin shown only for goods on the market or
    repacked (a void code's goods are not vouched for)."""
    status = status_of(facts)
    if status not in (OriginStatus.GENUINE_ACTIVE, OriginStatus.CONSUMED) or origin is None:
        return OriginView(code, status, MESSAGES[status])
    return OriginView(code, status, MESSAGES[status], origin,
                      _place(catalog, origin.producer_division),
                      _place(catalog, origin.origin_division))


@functools.lru_cache(maxsize=20_000)
def cached_view(code: str, code_view: str, batch_view: str, catalog: DivisionCatalog
                ) -> OriginView:
    """The answer for a code whose view and whose batch's view both came from the cache, as
    the JSON texts stored there: a pure function of them, memoised by content - a changed
    view is another text, so a memoised answer is never stale; a hot code's scan decodes
    nothing."""
    return view(code, CodeFacts.from_cache(code, json.loads(code_view)),
                cached_batch(batch_view), catalog)


@functools.lru_cache(maxsize=4_096)
def cached_batch(batch_view: str) -> BatchOrigin:
    """A batch's origin from its cached JSON text, memoised by content as cached_view: the
    codes of one batch (thousands of packages) share one object, so a first scan of any of
    them decodes nothing and its answer's origin part is built once (see the servicer)."""
    return BatchOrigin.from_cache(json.loads(batch_view))


def malformed() -> OriginView:
    return OriginView("", OriginStatus.MALFORMED, MESSAGES[OriginStatus.MALFORMED])
