"""Parsing of the words operators type or provincial files contain into proto enum names.

Pure: returns enum value *names* (e.g. "SUBJECT_KIND_ENTERPRISE") so that it needs no generated
code; callers turn a name into a number with `registry_pb2.SubjectKind.Value(name)`.
"""

from __future__ import annotations

UNSPECIFIED_KIND = "SUBJECT_KIND_UNSPECIFIED"
UNSPECIFIED_STATUS = "SUBJECT_STATUS_UNSPECIFIED"
KIND_PREFIX = "SUBJECT_KIND_"
STATUS_PREFIX = "SUBJECT_STATUS_"

SUBJECT_KIND_NAMES: tuple[str, ...] = (
    "SUBJECT_KIND_ENTERPRISE",
    "SUBJECT_KIND_COOPERATIVE",
    "SUBJECT_KIND_FAMILY_FARM",
    "SUBJECT_KIND_INDIVIDUAL_FARMER",
    "SUBJECT_KIND_PROCESSOR",
    "SUBJECT_KIND_TRADER",
    "SUBJECT_KIND_WHOLESALE_MARKET",
    "SUBJECT_KIND_RETAILER",
    "SUBJECT_KIND_COLLECTIVE",
)

SUBJECT_STATUS_NAMES: tuple[str, ...] = (
    "SUBJECT_STATUS_PENDING_REVIEW",
    "SUBJECT_STATUS_APPROVED",
    "SUBJECT_STATUS_REJECTED",
    "SUBJECT_STATUS_SUSPENDED",
)

# The Chinese words provincial platforms use for each kind (exact matches only: 加工企业 must
# not be read as 企业).
CHINESE_KIND_WORDS: dict[str, str] = {
    "企业": "SUBJECT_KIND_ENTERPRISE",
    "合作社": "SUBJECT_KIND_COOPERATIVE",
    "专业合作社": "SUBJECT_KIND_COOPERATIVE",
    "农民专业合作社": "SUBJECT_KIND_COOPERATIVE",
    "家庭农场": "SUBJECT_KIND_FAMILY_FARM",
    "农户": "SUBJECT_KIND_INDIVIDUAL_FARMER",
    "加工企业": "SUBJECT_KIND_PROCESSOR",
    "经纪人": "SUBJECT_KIND_TRADER",
    "贩销户": "SUBJECT_KIND_TRADER",
    "批发市场": "SUBJECT_KIND_WHOLESALE_MARKET",
    "零售": "SUBJECT_KIND_RETAILER",
    "超市": "SUBJECT_KIND_RETAILER",
    "村集体": "SUBJECT_KIND_COLLECTIVE",
    "村集体经济组织": "SUBJECT_KIND_COLLECTIVE",
}


def _normalise_word(text: str) -> str:
    """Upper-cases and turns spaces and dashes into underscores: "family farm" -> FAMILY_FARM."""
    collapsed = "_".join(text.strip().replace("-", " ").split())
    return collapsed.upper()


def parse_subject_kind(text: str) -> str:
    """The SubjectKind name for `text`, or SUBJECT_KIND_UNSPECIFIED when it is not recognised.

    Accepts "ENTERPRISE", "enterprise", "family-farm", "SUBJECT_KIND_ENTERPRISE" and the
    Chinese words in CHINESE_KIND_WORDS. An unrecognised kind is deliberately not an error here:
    an import sends it as UNSPECIFIED so that the server rejects that one record with a reason.
    """
    stripped = "".join(text.split())
    if stripped in CHINESE_KIND_WORDS:
        return CHINESE_KIND_WORDS[stripped]
    word = _normalise_word(text)
    candidate = word if word.startswith(KIND_PREFIX) else KIND_PREFIX + word
    if candidate in SUBJECT_KIND_NAMES:
        return candidate
    return UNSPECIFIED_KIND


def parse_subject_status(text: str) -> str | None:
    """The SubjectStatus name for `text` ("approved", "PENDING_REVIEW", ...), or None."""
    word = _normalise_word(text)
    candidate = word if word.startswith(STATUS_PREFIX) else STATUS_PREFIX + word
    return candidate if candidate in SUBJECT_STATUS_NAMES else None


def short_enum_name(full_name: str, prefix: str) -> str:
    """ "SUBJECT_KIND_FAMILY_FARM" -> "FAMILY_FARM" (for display)."""
    return full_name.removeprefix(prefix)


def kind_choices_help() -> str:
    """The accepted kinds, for help texts."""
    return ", ".join(short_enum_name(name, KIND_PREFIX).lower() for name in SUBJECT_KIND_NAMES)
