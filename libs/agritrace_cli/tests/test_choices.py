from __future__ import annotations

import pytest

from agritrace_cli.choices import parse_subject_kind, parse_subject_status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ENTERPRISE", "SUBJECT_KIND_ENTERPRISE"),
        ("enterprise", "SUBJECT_KIND_ENTERPRISE"),
        (" SUBJECT_KIND_ENTERPRISE ", "SUBJECT_KIND_ENTERPRISE"),
        ("subject_kind_cooperative", "SUBJECT_KIND_COOPERATIVE"),
        ("family-farm", "SUBJECT_KIND_FAMILY_FARM"),
        ("Family Farm", "SUBJECT_KIND_FAMILY_FARM"),
        ("individual_farmer", "SUBJECT_KIND_INDIVIDUAL_FARMER"),
        ("企业", "SUBJECT_KIND_ENTERPRISE"),
        ("合作社", "SUBJECT_KIND_COOPERATIVE"),
        ("家庭农场", "SUBJECT_KIND_FAMILY_FARM"),
        ("农户", "SUBJECT_KIND_INDIVIDUAL_FARMER"),
        ("加工企业", "SUBJECT_KIND_PROCESSOR"),
        ("经纪人", "SUBJECT_KIND_TRADER"),
        ("批发市场", "SUBJECT_KIND_WHOLESALE_MARKET"),
        ("零售", "SUBJECT_KIND_RETAILER"),
        (" 村集体 ", "SUBJECT_KIND_COLLECTIVE"),
    ],
)
def test_known_kinds_are_recognised(text: str, expected: str) -> None:
    assert parse_subject_kind(text) == expected


@pytest.mark.parametrize("text", ["", "farmer co", "公司企业", "1", "UNSPECIFIED", "SUBJECT_KIND_"])
def test_unknown_kinds_become_unspecified(text: str) -> None:
    assert parse_subject_kind(text) == "SUBJECT_KIND_UNSPECIFIED"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("approved", "SUBJECT_STATUS_APPROVED"),
        ("pending-review", "SUBJECT_STATUS_PENDING_REVIEW"),
        ("SUBJECT_STATUS_SUSPENDED", "SUBJECT_STATUS_SUSPENDED"),
        ("deleted", None),
    ],
)
def test_statuses(text: str, expected: str | None) -> None:
    assert parse_subject_status(text) == expected
