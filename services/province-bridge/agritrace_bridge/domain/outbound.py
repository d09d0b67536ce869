"""National records on their way to the province: which national events concern it, and
what of each is pushed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The national events a bridge subscribes to: (source service, event name).
SUBSCRIBED = (("registry", "subject_registered"), ("registry", "subject_reviewed"),
              ("coding", "codes_issued"), ("flow", "batch_shipped"))
# What of each event's payload goes to the province: identities, divisions, states, codes.
# Names are left out (a natural person's name is personal data), as is anything not listed.
_PUSHED_FIELDS = {
    "subject_registered": ("subject_id", "kind", "division_code", "credit_code", "status",
                           "version"),
    "subject_reviewed": ("subject_id", "kind", "division_code", "credit_code", "status",
                         "version", "previous_status", "decision", "reason"),
    "codes_issued": ("issuance_id", "subject_id", "subject_division", "province", "mode",
                     "product_batch_id", "first_serial", "last_serial", "codes", "code_count",
                     "part", "parts"),
    "batch_shipped": ("shipment_id", "batch_id", "seller_subject_id", "buyer_subject_id",
                      "seller_province", "buyer_province", "cross_province", "quantity",
                      "unit", "codes", "ship_time"),
}


@dataclass(frozen=True)
class QueuedRecord:
    """A national record for the provincial platform (the contract's NationalRecord), with
    its delivery attempts so far."""

    record_id: str
    type: str
    occur_time: datetime
    subject_id: str
    payload: Mapping[str, Any]
    enqueued_at: datetime
    attempts: int = 0
    last_error: str = ""


def concerns(province: str, source: str, name: str, payload: Mapping[str, Any]) -> bool:
    """Whether a national event is about the province: a subject of it registered or
    reviewed, codes issued to one of its subjects, a shipment into or out of it."""
    if (source, name) not in SUBSCRIBED:
        return False
    if name.startswith("subject_"):
        return str(payload.get("division_code", ""))[:2] == province
    if name == "codes_issued":
        return str(payload.get("province", "")) == province
    return province in (str(payload.get("seller_province", "")),
                        str(payload.get("buyer_province", "")))


def national_record(event_id: str, name: str, occur_time: datetime,
                    payload: Mapping[str, Any], now: datetime) -> QueuedRecord:
    """The record pushed for an event that concerns the province."""
    fields = _PUSHED_FIELDS.get(name, ())
    subject = payload.get("subject_id") or payload.get("seller_subject_id") or ""
    return QueuedRecord(
        record_id=event_id, type=name.upper(), occur_time=occur_time, subject_id=str(subject),
        payload={key: payload[key] for key in fields if key in payload}, enqueued_at=now)
