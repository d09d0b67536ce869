"""Deterministic data of a simulated province: its subjects and its production records.

Subject i is computed from (seed, province, i) alone, never stored, so a 50,000-subject
province starts at once, pages cost what they hold, and every run with the same seed answers
the same. Identifiers are valid by the registry's own rules (GB 32100 credit codes, GB 11643
resident ID numbers, counties of the province's GB/T 2260 divisions) and unique by
construction. Subjects of the overlap set ("shared") are the same organisations, with the same
data, in both provinces' simulators started with the same seed: the national import must end
with one identity and two provenances for each.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TypeVar

from agritrace_bridge.contract import (
    Feed,
    Fertiliser,
    Harvest,
    Inspection,
    Pesticide,
    Planting,
    Quantity,
    Slaughter,
    Subject,
    SubjectKind,
    TraceRecord,
    VeterinaryDrug,
)
from agritrace_registry.domain.divisions import Division, DivisionCatalog
from agritrace_registry.domain.identifiers import (
    PROVINCE_CODES,
    SUBJECT_ID_ALPHABET,
    credit_code_check_char,
    resident_id_check_char,
)

T = TypeVar("T")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_MASK64 = (1 << 64) - 1
# A division code no catalogue holds: the registry rejects such a record (--invalid-every).
UNKNOWN_DIVISION = "999999"
# Own subjects' organisation numbers come from [0, 50M), shared ones from above: never equal.
_SHARED_BASE = 50_000_000
# Subjects one simulated province may hold (subjects added at run time included): keeps every
# generated identifier unique and every birth date in the past (see `subject`).
MAX_SUBJECTS = 10_000_000
_BIRTH_DAYS = 18_000  # births spread over 1950-01-01 .. 1999-04-14
_MAX_SHARED = 100_000
_ORG_SPACE = 100_000_000
# i -> (i + offset) * 7919 mod 10^8 is a bijection (7919 is prime to 10^8) that looks unordered.
_ORG_MULTIPLIER = 7919
_ORG_OFFSET = 10_000_019
_GB11714_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_GB11714_VALUES = {ch: i for i, ch in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}

# Registration authority and organisation type (credit code positions 1-2) by kind.
_CREDIT_PREFIX = {
    SubjectKind.ENTERPRISE: "91", SubjectKind.PROCESSOR: "91",
    SubjectKind.WHOLESALE_MARKET: "91", SubjectKind.RETAILER: "91",
    SubjectKind.COOPERATIVE: "93", SubjectKind.FAMILY_FARM: "92", SubjectKind.TRADER: "92",
    SubjectKind.COLLECTIVE: "N1",
}
_OWN_KINDS = (
    (SubjectKind.INDIVIDUAL_FARMER, 35), (SubjectKind.FAMILY_FARM, 15),
    (SubjectKind.COOPERATIVE, 15), (SubjectKind.ENTERPRISE, 10), (SubjectKind.TRADER, 10),
    (SubjectKind.PROCESSOR, 5), (SubjectKind.RETAILER, 5), (SubjectKind.COLLECTIVE, 3),
    (SubjectKind.WHOLESALE_MARKET, 2),
)
_SHARED_KINDS = (SubjectKind.ENTERPRISE, SubjectKind.COOPERATIVE, SubjectKind.PROCESSOR,
                 SubjectKind.WHOLESALE_MARKET)
# Kinds that may register with either a credit code or the person's ID number.
_EITHER_KEY = frozenset({SubjectKind.FAMILY_FARM, SubjectKind.TRADER, SubjectKind.RETAILER})
_PERSON_KINDS = frozenset({SubjectKind.INDIVIDUAL_FARMER})
_ORG_SUFFIX = {
    SubjectKind.ENTERPRISE: "农业发展有限公司", SubjectKind.PROCESSOR: "食品加工有限公司",
    SubjectKind.WHOLESALE_MARKET: "农产品批发市场有限公司", SubjectKind.RETAILER: "生鲜超市",
    SubjectKind.COOPERATIVE: "农民专业合作社", SubjectKind.FAMILY_FARM: "家庭农场",
    SubjectKind.TRADER: "农产品经销部", SubjectKind.COLLECTIVE: "股份经济合作社",
}
_WORDS = ("绿源", "丰收", "金穗", "青禾", "沃土", "鑫农", "康田", "润泽", "禾丰", "嘉禾",
          "福满", "田园", "山泉", "瑞雪", "春晖", "谷香")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国志红海燕"


class Draws:
    """A deterministic stream of random draws keyed by a string (SplitMix64 seeded from
    BLAKE2b). random.Random would do, but seeding its Mersenne Twister costs as much as the
    rest of a subject, and every listing pass generates each subject anew."""

    __slots__ = ("_state",)

    def __init__(self, key: str) -> None:
        self._state = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(),
                                     "big")

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def randrange(self, n: int) -> int:
        """0 <= x < n (the modulo bias is below 2^-40 for the n used here)."""
        return self._next() % n

    def randint(self, low: int, high: int) -> int:
        return low + self.randrange(high - low + 1)

    def choice(self, items: Sequence[T]) -> T:
        return items[self.randrange(len(items))]

    def random(self) -> float:
        return (self._next() >> 11) / (1 << 53)

    def weighted(self, items: Sequence[T], cumulative: Sequence[int]) -> T:
        """An item drawn with the weights whose running totals are `cumulative`."""
        return items[bisect.bisect_right(cumulative, self.randrange(cumulative[-1]))]


def _counties(province: str) -> tuple[Division, ...]:
    return _county_table()[province]


@cache
def _county_table() -> dict[str, tuple[Division, ...]]:
    by_province: dict[str, list[Division]] = {}
    for division in DivisionCatalog.bundled():
        if division.level == "county":
            by_province.setdefault(division.code[:2], []).append(division)
    return {p: tuple(sorted(ds, key=lambda d: d.code)) for p, ds in by_province.items()}


@cache
def _place(county: str) -> str:
    """"山东省 济南市 历下区": the start of an address in the county."""
    return DivisionCatalog.bundled().name_path(county)


def gb11714_check_char(body: str) -> str:
    """The check character of a national organisation code (GB 11714, positions 9-17 of a
    credit code) over its 8 body characters."""
    total = sum(_GB11714_VALUES[ch] * w for ch, w in zip(body, _GB11714_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def make_credit_code(prefix: str, division: str, number: int) -> str:
    """A valid unified social credit code: authority and type, registration division, an
    organisation code made from `number` (< 10^8) with its GB 11714 check, the GB 32100
    check character."""
    body = f"{(number + _ORG_OFFSET) * _ORG_MULTIPLIER % _ORG_SPACE:08d}"
    first17 = prefix + division + body + gb11714_check_char(body)
    return first17 + credit_code_check_char(first17)


def make_resident_id(division: str, birth: date, sequence: int) -> str:
    """A valid 18-character resident ID number (GB 11643)."""
    first17 = f"{division}{birth:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_char(first17)


def _person_name(rng: Draws) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _mobile(rng: Draws) -> str:
    return f"1{rng.randint(3, 9)}{rng.randrange(10**9):09d}"


_KINDS = tuple(kind for kind, _ in _OWN_KINDS)
_CUMULATIVE = tuple(itertools.accumulate(weight for _, weight in _OWN_KINDS))


def _pick_kind(rng: Draws) -> SubjectKind:
    return rng.weighted(_KINDS, _CUMULATIVE)


@dataclass(frozen=True)
class SubjectGenerator:
    """The subjects of one simulated province: `count` in all, of which the last `shared`
    (before any added later) are the overlap set with province `shared_with`."""

    province: str
    seed: int
    count: int
    shared_with: str = ""
    shared: int = 0
    # Every n-th own subject carries an unknown division code (0: none), for rejections.
    invalid_every: int = 0

    def __post_init__(self) -> None:
        if self.province not in PROVINCE_CODES:
            raise ValueError(f"{self.province!r} is not a province code")
        if self.shared and (self.shared_with not in PROVINCE_CODES
                            or self.shared_with == self.province):
            raise ValueError("the overlap set needs another province (--shared-with)")
        if not 0 <= self.shared <= min(self.count, _MAX_SHARED):
            raise ValueError(f"the overlap set holds 0 to min(subjects, {_MAX_SHARED})")
        if not 0 <= self.count <= MAX_SUBJECTS:
            raise ValueError(f"a simulated province holds at most {MAX_SUBJECTS} subjects")

    @property
    def own(self) -> int:
        return self.count - self.shared

    def source_record_id(self, index: int) -> str:
        return f"{self.province}-{index:08d}"

    def subject(self, index: int) -> Subject:
        """Subject `index` (0-based); indices past `count` are subjects added later."""
        if self.own <= index < self.count:
            return self._shared_subject(index, index - self.own)
        rng = Draws(f"{self.seed}/{self.province}/{index}")
        counties = _counties(self.province)
        county = counties[index % len(counties)]
        kind = _pick_kind(rng)
        person = kind in _PERSON_KINDS or (kind in _EITHER_KEY and rng.random() < 0.5)
        person_name = _person_name(rng)
        credit_code = resident_id = ""
        if person:
            # (county, birth date, sequence // 10) differs for every index, so the numbers
            # never collide; the last sequence digit is random (its parity is the sex).
            rounds, day = divmod(index // len(counties), _BIRTH_DAYS)
            birth = date(1950, 1, 1) + timedelta(days=day)
            resident_id = make_resident_id(county.code, birth, rounds * 10 + rng.randrange(10))
            name = person_name if kind is SubjectKind.INDIVIDUAL_FARMER else \
                f"{person_name}{_ORG_SUFFIX[kind]}"
        else:
            credit_code = make_credit_code(_CREDIT_PREFIX[kind], county.code, index)
            name = f"{county.name}{rng.choice(_WORDS)}{_ORG_SUFFIX[kind]}"
        invalid = self.invalid_every and index % self.invalid_every == self.invalid_every - 1
        return Subject(
            source_record_id=self.source_record_id(index),
            kind=kind.value,
            name=name,
            credit_code=credit_code,
            resident_id=resident_id,
            division_code=UNKNOWN_DIVISION if invalid else county.code,
            address=f"{_place(county.code)}{rng.randint(1, 300)}号",
            legal_representative=person_name,
            contact_phone=_mobile(rng),
            update_time=EPOCH + timedelta(minutes=index),
        )

    def _shared_subject(self, index: int, shared_index: int) -> Subject:
        # Keyed on the pair, not on this province: both simulators compute the same subject.
        low, high = sorted((self.province, self.shared_with))
        rng = Draws(f"{self.seed}/shared/{low}-{high}/{shared_index}")
        counties = _counties(low)
        county = counties[shared_index % len(counties)]
        kind = rng.choice(_SHARED_KINDS)
        number = _SHARED_BASE + int(high) * _MAX_SHARED + shared_index
        return Subject(
            source_record_id=self.source_record_id(index),
            kind=kind.value,
            name=f"{county.name}{rng.choice(_WORDS)}{_ORG_SUFFIX[kind]}",
            credit_code=make_credit_code(_CREDIT_PREFIX[kind], county.code, number),
            division_code=county.code,
            address=f"{_place(county.code)}{rng.randint(1, 300)}号",
            legal_representative=_person_name(rng),
            contact_phone=_mobile(rng),
            update_time=EPOCH,
        )


# --------------------------------------------------------------------------------------------
# Production records
# --------------------------------------------------------------------------------------------

_PLANT_STEPS = ("PLANTING", "FERTILISER", "PESTICIDE", "INSPECTION", "HARVEST")
_ANIMAL_STEPS = ("FEED", "VETERINARY_DRUG", "FEED", "INSPECTION", "SLAUGHTER")
# Days after a batch's start at which each step happens: past every interval below.
_STEP_DAY = (0, 10, 20, 40, 45)


def invent_batch_ids(province: str, seed: int, count: int) -> list[str]:
    """Batch ids in the shape of the flow service's (B + province + 13 characters), for a
    simulator that was told no real batches."""
    rng = Draws(f"{seed}/{province}/batches")
    return ["B" + province + "".join(rng.choice(SUBJECT_ID_ALPHABET) for _ in range(13))
            for _ in range(count)]


def trace_record_id(province: str, number: int) -> str:
    """The id of production record `number` (0-based) of the province's simulator: ids sort
    in the order the records were made."""
    return f"{province}-T{number:09d}"


def trace_record(province: str, seed: int, batch_ids: list[str], number: int) -> TraceRecord:
    """Production record `number` (0-based): the records go round the batches, each batch
    following a plant or an animal life cycle whose intervals pass before the harvest."""
    batch_index = number % len(batch_ids)
    batch_id = batch_ids[batch_index]
    plant = batch_index % 2 == 0
    steps = _PLANT_STEPS if plant else _ANIMAL_STEPS
    step = (number // len(batch_ids)) % len(steps)
    cycle = number // (len(batch_ids) * len(steps))
    rng = Draws(f"{seed}/{province}/record/{number}")
    start = EPOCH + timedelta(days=60 * cycle, hours=batch_index % 24)
    occurred = start + timedelta(days=_STEP_DAY[step], minutes=rng.randrange(600))
    activity = _activity(steps[step], rng)
    return TraceRecord(record_id=trace_record_id(province, number), batch_id=batch_id,
                       occur_time=occurred, activity=activity, update_time=occurred)


def _kg(rng: Draws, low: int, high: int) -> Quantity:
    return Quantity(amount=f"{rng.randint(low, high)}.{rng.randrange(10)}", unit="KG")


def _activity(kind: str, rng: Draws) -> (
    Planting | Fertiliser | Pesticide | Feed | VeterinaryDrug | Harvest | Slaughter | Inspection
):
    if kind == "PLANTING":
        return Planting(variety=rng.choice(("寿光番茄", "京欣西瓜", "红富士", "济麦22")),
                        area_mu=f"{rng.randint(1, 200)}.{rng.randrange(10)}")
    if kind == "FERTILISER":
        return Fertiliser(name=rng.choice(("复合肥", "有机肥", "尿素")), amount=_kg(rng, 10, 500))
    if kind == "PESTICIDE":
        return Pesticide(name=rng.choice(("吡虫啉", "阿维菌素", "多菌灵")),
                         registration_number=f"PD2{rng.randrange(10**7):07d}",
                         amount=_kg(rng, 1, 20), pre_harvest_interval_days=rng.choice((7, 14)))
    if kind == "FEED":
        return Feed(name=rng.choice(("玉米", "豆粕", "配合饲料")), amount=_kg(rng, 100, 2000))
    if kind == "VETERINARY_DRUG":
        return VeterinaryDrug(name=rng.choice(("阿莫西林", "伊维菌素")),
                              approval_number=f"兽药字{rng.randrange(10**9):09d}",
                              dose=Quantity(amount=f"{rng.randint(1, 50)}", unit="G"),
                              withdrawal_period_days=rng.choice((7, 14, 21)))
    if kind == "HARVEST":
        return Harvest(quantity=_kg(rng, 500, 20000))
    if kind == "SLAUGHTER":
        return Slaughter(heads=rng.randint(1, 200),
                         quarantine_certificate=f"动检{rng.randrange(10**10):010d}")
    return Inspection(item=rng.choice(("有机磷农药残留", "兽药残留", "瘦肉精")), passed=True,
                      result="未检出", inspector=rng.choice(("县农产品质检站", "第三方检测机构")))
