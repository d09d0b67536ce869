"""Synthetic provincial registration histories for the import benchmark.

Records look like the real thing: organisations carry GB 32100 credit codes (registration
authority and category by kind, positions 3-8 a real county of the bundled catalogue, a
GB 11714 organisation code with its own check character, the GB 32100 check character),
natural persons GB 11643 resident ID numbers (real county, possible birth date, check
character), mainland mobile or fixed-line phones, Chinese names and addresses of real
divisions. Provinces get shares roughly in proportion to their farming population.

Each province is one import run (`source_province` is fixed per run). Of all records about
5% repeat the identity key of an earlier record: most with the same material data (kind,
name by `name_key`, division) but cosmetic differences the registry must see through (spaces,
full-width characters, lower-case letters in the key, a new phone or address) -> MERGED; some
with a contradictory name -> CONFLICT. A tenth of the duplicates repeat a record of a province
imported earlier (the registry de-duplicates across sources). About 0.4% of the records are
invalid in one of a dozen ways -> REJECTED. The expected outcome of every record is known, so
the benchmark can check the registry's counts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.divisions import Division, DivisionCatalog

CREATED: Final = "CREATED"
MERGED: Final = "MERGED"
CONFLICT: Final = "CONFLICT"
REJECTED: Final = "REJECTED"
OUTCOMES: Final = (CREATED, MERGED, CONFLICT, REJECTED)

DUPLICATE_SHARE: Final = 0.05
CONFLICT_SHARE_OF_DUPLICATES: Final = 0.2
CROSS_PROVINCE_SHARE_OF_DUPLICATES: Final = 0.1
INVALID_SHARE: Final = 0.004
CHECK_FAILED_SHARE_OF_CODES: Final = 0.002  # genuine old codes: flagged, still created

# Rough shares of agricultural producers and traders, by province (GB/T 2260 first level).
PROVINCE_WEIGHTS: Final[dict[str, float]] = {
    "37": 9.0, "41": 9.0, "51": 8.0, "13": 6.0, "32": 5.5, "34": 5.0, "42": 5.0, "43": 5.0,
    "44": 4.5, "45": 4.0, "53": 4.0, "23": 4.0, "33": 3.5, "36": 3.0, "22": 3.0, "21": 3.0,
    "52": 3.0, "61": 3.0, "15": 2.8, "14": 2.5, "35": 2.5, "62": 2.5, "65": 2.5, "50": 2.0,
    "46": 1.0, "64": 1.0, "63": 0.7, "54": 0.5, "11": 0.5, "12": 0.5, "31": 0.4,
}
# Area code of each province's capital, for fixed-line numbers.
AREA_CODES: Final[dict[str, str]] = {
    "11": "010", "12": "022", "13": "0311", "14": "0351", "15": "0471", "21": "024",
    "22": "0431", "23": "0451", "31": "021", "32": "025", "33": "0571", "34": "0551",
    "35": "0591", "36": "0791", "37": "0531", "41": "0371", "42": "027", "43": "0731",
    "44": "020", "45": "0771", "46": "0898", "50": "023", "51": "028", "52": "0851",
    "53": "0871", "54": "0891", "61": "029", "62": "0931", "63": "0971", "64": "0951",
    "65": "0991",
}

ENTERPRISE: Final = pb.SUBJECT_KIND_ENTERPRISE
COOPERATIVE: Final = pb.SUBJECT_KIND_COOPERATIVE
FAMILY_FARM: Final = pb.SUBJECT_KIND_FAMILY_FARM
INDIVIDUAL_FARMER: Final = pb.SUBJECT_KIND_INDIVIDUAL_FARMER
PROCESSOR: Final = pb.SUBJECT_KIND_PROCESSOR
TRADER: Final = pb.SUBJECT_KIND_TRADER
WHOLESALE_MARKET: Final = pb.SUBJECT_KIND_WHOLESALE_MARKET
RETAILER: Final = pb.SUBJECT_KIND_RETAILER
COLLECTIVE: Final = pb.SUBJECT_KIND_COLLECTIVE
UNSPECIFIED: Final = pb.SUBJECT_KIND_UNSPECIFIED
ANIMAL_PRODUCTS: Final = frozenset({"生猪", "家禽", "水产", "奶牛", "肉牛", "蜂业"})
# (kind, share, identity: "credit" | "person" | "either")
KIND_MIX: Final[tuple[tuple[int, float, str], ...]] = (
    (INDIVIDUAL_FARMER, 0.45, "person"),
    (FAMILY_FARM, 0.15, "either"),
    (COOPERATIVE, 0.15, "credit"),
    (ENTERPRISE, 0.10, "credit"),
    (TRADER, 0.06, "either"),
    (PROCESSOR, 0.04, "credit"),
    (RETAILER, 0.03, "either"),
    (COLLECTIVE, 0.015, "credit"),
    (WHOLESALE_MARKET, 0.005, "credit"),
)
# GB 32100 positions 1-2: registration authority and category.
CREDIT_PREFIX: Final[dict[int, tuple[str, ...]]] = {
    ENTERPRISE: ("91",),
    COOPERATIVE: ("93",),
    PROCESSOR: ("91",),
    WHOLESALE_MARKET: ("91",),
    COLLECTIVE: ("N2", "N3"),
    FAMILY_FARM: ("92", "91"),
    TRADER: ("92",),
    RETAILER: ("92", "91"),
}

SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃"
)
GIVEN: Final = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰春生海林文东成福贵金山水"
    "德荣富兴旺喜庆云凤梅琴燕霖俊峰宏振永长庆胜利德才光辉"
)
BRANDS: Final = (
    "绿源", "丰收", "金穗", "禾丰", "田园", "惠农", "兴农", "富民", "鑫旺", "宏达", "康禾", "绿野",
    "嘉禾", "沃土", "青山", "碧水", "金田", "瑞丰", "稻香", "果然", "万家", "百草", "农家乐",
    "天润",
)
PRODUCTS: Final = (
    "蔬菜", "水果", "茶叶", "粮食", "生猪", "家禽", "水产", "食用菌", "中药材", "花卉", "柑橘",
    "苹果", "葡萄", "奶牛", "肉牛", "蜂业", "稻米", "小麦", "玉米", "马铃薯", "油茶", "核桃",
)
PLACES: Final = (
    "城关", "新华", "东风", "红星", "太平", "永安", "长安", "青龙", "白马", "石桥", "柳河", "大王",
    "双河", "三合", "花园", "黄土", "高桥", "新集", "李庄", "王营", "杨柳", "桃园", "河口", "龙泉",
)
MOBILE_PREFIXES: Final = tuple(
    [f"13{d}" for d in range(10)] + [f"15{d}" for d in "012356789"]
    + ["173", "175", "176", "177", "178"] + [f"18{d}" for d in range(10)] + ["198", "199"]
)
_ORG_CODE_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(slots=True)
class Record:
    """One generated record and the outcome the registry should give it."""

    source_record_id: str
    kind: int
    name: str
    division_code: str
    expected: str
    credit_code: str = ""
    resident_id: str = ""
    address: str = ""
    legal_representative: str = ""
    contact_phone: str = ""

    def to_proto(self) -> pb.ImportRecord:
        return pb.ImportRecord(
            source_record_id=self.source_record_id,
            registration=pb.SubjectRegistration(
                kind=self.kind,  # type: ignore[arg-type]
                name=self.name,
                credit_code=self.credit_code,
                resident_id=self.resident_id,
                division_code=self.division_code,
                address=self.address,
                legal_representative=self.legal_representative,
                contact_phone=self.contact_phone,
            ),
        )


@dataclass
class ProvinceImport:
    """One import run: one province's records, and its stream messages once built."""

    province: str
    province_name: str
    import_id: str
    records: list[Record] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)  # serialized ImportSubjectsRequest

    def build_messages(self, batch_size: int) -> None:
        self.messages = []
        for start in range(0, len(self.records), batch_size):
            message = pb.ImportSubjectsRequest(
                records=[r.to_proto() for r in self.records[start : start + batch_size]]
            )
            if start == 0:
                message.import_id = self.import_id
                message.source_province = self.province
            self.messages.append(message.SerializeToString())


@dataclass
class Dataset:
    imports: list[ProvinceImport]
    # The first record of every identity key: exactly the subjects an import should create.
    originals: list[Record]

    @property
    def total(self) -> int:
        return sum(len(p.records) for p in self.imports)

    def expected_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for province in self.imports:
            for record in province.records:
                counts[record.expected] += 1
        return counts

    def build_messages(self, batch_size: int) -> None:
        for province in self.imports:
            province.build_messages(batch_size)

    def message_bytes(self) -> int:
        return sum(len(m) for p in self.imports for m in p.messages)


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Splits `total` over the keys in proportion to `weights` (largest remainder)."""
    weight_sum = sum(weights.values())
    exact = {key: total * weight / weight_sum for key, weight in weights.items()}
    counts = {key: int(value) for key, value in exact.items()}
    short = total - sum(counts.values())
    for key in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:short]:
        counts[key] += 1
    return counts


def org_code_check_char(body8: str) -> str:
    """GB 11714 check character of an 8-digit organisation code body."""
    value = 11 - sum(int(ch) * w for ch, w in zip(body8, _ORG_CODE_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


class SubjectGenerator:
    """Deterministic (seeded) generator of realistic subject records."""

    def __init__(self, seed: int, catalog: DivisionCatalog,
                 cross_province_share: float = CROSS_PROVINCE_SHARE_OF_DUPLICATES) -> None:
        self.rng = random.Random(seed)
        self.cross_province_share = cross_province_share
        self.catalog = catalog
        self.counties: dict[str, list[Division]] = {}
        for division in catalog:
            if division.level == "county":
                self.counties.setdefault(division.code[:2], []).append(division)
        self.province_names = {
            d.code: d.name for d in catalog if d.level == "province"
        }
        self._addresses: dict[str, str] = {}
        self._org_serial = 0
        self._resident_ids: set[str] = set()
        self._kinds = [k for k, _, _ in KIND_MIX]
        self._kind_weights = [w for _, w, _ in KIND_MIX]
        self._identity = {k: i for k, _, i in KIND_MIX}

    # -- pieces ------------------------------------------------------------------------------

    def person_name(self) -> str:
        rng = self.rng
        given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
        return rng.choice(SURNAMES) + given

    def mobile(self) -> str:
        return self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"

    def phone(self, province: str) -> str:
        roll = self.rng.random()
        if roll < 0.85:
            return self.mobile()
        if roll < 0.93:
            return f"{AREA_CODES[province]}-{self.rng.randrange(2 * 10**7, 9 * 10**7)}"
        return ""

    def credit_code(self, kind: int, county: str) -> str:
        self._org_serial += 1
        # A bijection of the serial onto 8 digits: unique bodies that do not look sequential.
        body = f"{(self._org_serial * 48271 + 12345678) % 10**8:08d}"
        first17 = self.rng.choice(CREDIT_PREFIX[kind]) + county + body + org_code_check_char(body)
        check = identifiers.credit_code_check_char(first17)
        if self.rng.random() < CHECK_FAILED_SHARE_OF_CODES:
            alphabet = identifiers.CREDIT_CODE_ALPHABET
            check = alphabet[(alphabet.index(check) + 1) % len(alphabet)]
        return first17 + check

    def resident_id(self, province: str, county: str) -> str:
        rng = self.rng
        while True:
            birth_county = (county if rng.random() < 0.8
                            else rng.choice(self.counties[province]).code)
            year = rng.randrange(1945, 2003)
            month = rng.randrange(1, 13)
            day = rng.randrange(1, 29 if month == 2 else 31)
            first17 = f"{birth_county}{year:04d}{month:02d}{day:02d}{rng.randrange(1000):03d}"
            number = first17 + identifiers.resident_id_check_char(first17)
            if number not in self._resident_ids:
                self._resident_ids.add(number)
                return number

    def address(self, county: Division) -> str:
        prefix = self._addresses.get(county.code)
        if prefix is None:
            prefix = self._addresses[county.code] = self.catalog.name_path(county.code).replace(
                " ", ""
            )
        rng = self.rng
        return (f"{prefix}{rng.choice(PLACES)}镇{rng.choice(PLACES)}村"
                f"{rng.randrange(1, 300)}号")

    def org_name(self, kind: int, county: Division, person: str) -> str:
        rng = self.rng
        place = county.name[:-1] if len(county.name) > 2 else county.name
        brand, product = rng.choice(BRANDS), rng.choice(PRODUCTS)
        if kind == COOPERATIVE:
            trade = "养殖" if product in ANIMAL_PRODUCTS else "种植"
            return f"{place}{brand}{product}{trade}专业合作社"
        if kind == ENTERPRISE:
            return rng.choice((f"{place}{brand}农业科技有限公司",
                               f"{place}{brand}{product}开发有限公司"))
        if kind == PROCESSOR:
            return f"{place}{brand}食品加工有限公司"
        if kind == WHOLESALE_MARKET:
            return f"{place}{brand}农产品批发市场有限公司"
        if kind == COLLECTIVE:
            return f"{place}{rng.choice(PLACES)}镇{rng.choice(PLACES)}村股份经济合作社"
        if kind == FAMILY_FARM:
            return f"{place}{person}家庭农场"
        if kind == TRADER:
            return f"{place}{person}农产品经销部"
        return f"{place}{brand}生鲜超市"

    # -- records -----------------------------------------------------------------------------

    def original(self, province: str, record_id: str) -> Record:
        rng = self.rng
        county = rng.choice(self.counties[province])
        kind = rng.choices(self._kinds, self._kind_weights)[0]
        identity = self._identity[kind]
        if identity == "either":
            identity = "credit" if rng.random() < 0.4 else "person"
        person = self.person_name()
        record = Record(
            source_record_id=record_id,
            kind=kind,
            name=person if identity == "person" and kind != FAMILY_FARM
            else self.org_name(kind, county, person),
            division_code=county.code,
            expected=CREATED,
            address=self.address(county),
            legal_representative=person,
            contact_phone=self.phone(province),
        )
        if identity == "credit":
            record.credit_code = self.credit_code(kind, county.code)
        else:
            record.resident_id = self.resident_id(province, county.code)
        return record

    def duplicate(self, of: Record, record_id: str, province: str, conflict: bool) -> Record:
        """A later record with the same identity key."""
        rng = self.rng
        copy = Record(
            source_record_id=record_id, kind=of.kind, name=of.name,
            division_code=of.division_code, expected=MERGED, credit_code=of.credit_code,
            resident_id=of.resident_id, address=of.address,
            legal_representative=of.legal_representative, contact_phone=of.contact_phone,
        )
        if conflict:
            copy.expected = CONFLICT
            county = self.catalog.get(of.division_code)
            assert county is not None
            while copy.name == of.name:
                copy.name = (self.person_name() if of.name == of.legal_representative
                             else self.org_name(of.kind, county, self.person_name()))
            return copy
        roll = rng.random()
        if roll < 0.5:
            pass  # the same record, sent again by another office
        elif roll < 0.65:
            copy.contact_phone = self.mobile()
        elif roll < 0.75:
            county = self.catalog.get(of.division_code)
            assert county is not None
            copy.address = self.address(county)
        elif roll < 0.85:
            # Copy-and-paste artefacts: an ideographic space inside, spaces around.
            middle = len(of.name) // 2
            copy.name = f" {of.name[:middle]}\u3000{of.name[middle:]} "
        elif roll < 0.95:
            if copy.credit_code:
                copy.credit_code = copy.credit_code.lower()
            else:
                rid = copy.resident_id
                copy.resident_id = f"{rid[:6]} {rid[6:14]} {rid[14:]}".replace("X", "x")
        else:
            copy.legal_representative = self.person_name()
        return copy

    def invalid(self, province: str, record_id: str) -> Record:
        """A record the registry must reject, with a fresh key (never repeated later)."""
        rng = self.rng
        record = self.original(province, record_id)
        record.expected = REJECTED
        flaw = rng.randrange(12)
        if flaw == 0:
            record.kind = COOPERATIVE
            record.resident_id = ""
            record.credit_code = self.credit_code(COOPERATIVE,
                                                  record.division_code)[:17]
        elif flaw in (1, 2, 3):
            record.kind, record.credit_code = INDIVIDUAL_FARMER, ""
            number = self.resident_id(province, record.division_code)
            if flaw == 1:  # mistyped: check character off by one
                chars = identifiers.RESIDENT_ID_CHECK_CHARS
                record.resident_id = number[:17] + chars[(chars.index(number[17]) + 1) % 11]
            elif flaw == 2:  # 31 February
                first17 = number[:6] + "19870231" + number[14:17]
                record.resident_id = first17 + identifiers.resident_id_check_char(first17)
            else:  # first-generation 15-digit number
                record.resident_id = number[:6] + number[8:14] + number[14:17]
        elif flaw == 4:
            record.division_code = "990101"  # no such county
        elif flaw == 5:
            record.division_code = rng.choice(("110103", "330103", "310108"))  # retired
        elif flaw == 6:  # the city's (or, where the city has no counties, the province's)
            city = record.division_code[:4] + "00"
            found = self.catalog.get(city)
            record.division_code = city if found is None or found.level != "county" \
                else record.division_code[:2] + "0000"
        elif flaw == 7:
            record.name = "  "
        elif flaw == 8:
            record.contact_phone = "12345678"
        elif flaw == 9:
            record.kind = ENTERPRISE
            record.credit_code = ""
            record.resident_id = record.resident_id or self.resident_id(
                province, record.division_code)
        elif flaw == 10:
            record.kind = UNSPECIFIED
        else:
            record.kind = FAMILY_FARM
            record.credit_code = record.credit_code or self.credit_code(
                FAMILY_FARM, record.division_code)
            record.resident_id = record.resident_id or self.resident_id(
                province, record.division_code)
        return record

    def province(self, province: str, count: int, import_id: str,
                 earlier: Sequence[Record]) -> tuple[ProvinceImport, list[Record]]:
        """One province's import; `earlier` are the originals of provinces imported before."""
        rng = self.rng
        run = ProvinceImport(province, self.province_names[province], import_id)
        originals: list[Record] = []
        for serial in range(1, count + 1):
            record_id = f"{province}-{2015 + serial % 9}-{serial:08d}"
            roll = rng.random()
            if roll < INVALID_SHARE:
                record = self.invalid(province, record_id)
            elif roll < INVALID_SHARE + DUPLICATE_SHARE and originals:
                pool = earlier if earlier and rng.random() < self.cross_province_share \
                    else originals
                record = self.duplicate(rng.choice(pool), record_id, province,
                                        conflict=rng.random() < CONFLICT_SHARE_OF_DUPLICATES)
            else:
                record = self.original(province, record_id)
                originals.append(record)
            run.records.append(record)
        return run, originals


def generate(total: int, seed: int, run_tag: str, catalog: DivisionCatalog | None = None, *,
             cross_province: bool = True) -> Dataset:
    """`total` records over the provinces; each province one import run, largest first.
    Without `cross_province` every duplicate repeats a record of its own province (needed
    when provinces are imported concurrently: see benchmarks.run --streams)."""
    generator = SubjectGenerator(
        seed, catalog or DivisionCatalog.bundled(),
        CROSS_PROVINCE_SHARE_OF_DUPLICATES if cross_province else 0.0,
    )
    shares = allocate(total, PROVINCE_WEIGHTS)
    imports: list[ProvinceImport] = []
    originals: list[Record] = []
    for province in sorted(shares, key=lambda p: (-shares[p], p)):
        if shares[province] == 0:
            continue
        run, new = generator.province(
            province, shares[province], f"bench-{run_tag}-p{province}", originals
        )
        imports.append(run)
        originals.extend(new)
    return Dataset(imports, originals)


def identity_key(record: Record) -> str:
    """The normalised identity key (credit code, or resident ID number) of a valid record."""
    if record.credit_code:
        return "C" + identifiers.normalize_credit_code(record.credit_code)
    return "R" + identifiers.normalize_resident_id(record.resident_id)


def distinct_valid_keys(dataset: Dataset) -> int:
    """Distinct identity keys among the records that are not expected to be rejected."""
    return len({identity_key(r) for p in dataset.imports for r in p.records
                if r.expected != REJECTED})


def iter_records(dataset: Dataset) -> Iterator[Record]:
    for province in dataset.imports:
        yield from province.records
