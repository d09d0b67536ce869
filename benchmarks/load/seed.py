"""What the load test asks about, made through the platform's APIs as people would: supply
chains (agritrace_testing.chain: a Shandong cooperative's tomatoes through a Beijing market to
two retailers, one repacking), and a regulator. Written as JSON for the locust process, which
has only grpcio and the generated messages. The signed-in users get names and a password, not
tokens: each signs in itself and keeps its session alive (signin.py), however long the run."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from agritrace.query.v1 import query_pb2 as qpb
from agritrace.query.v1 import query_pb2_grpc
from agritrace_testing.chain import Chain, build_chain
from agritrace_testing.platform_client import PlatformClient

# The origin province's regulator runs the recalls: every chain starts in Shandong.
RECALL_JURISDICTION = "37"


@dataclass
class Seed:
    """Everything the locust users need: addresses, accounts and the goods."""

    query_address: str
    coding_address: str
    sso_address: str
    password: str = ""  # the seeded accounts' (made for the run, like them)
    scannable_codes: list[str] = field(default_factory=list)  # genuine, with an origin
    retailer_username: str = ""  # a retailer that received goods, for its ±1 view
    retailer_codes: list[str] = field(default_factory=list)  # codes that retailer handled
    regulator_username: str = ""  # a regulator of RECALL_JURISDICTION
    recall_batches: list[str] = field(default_factory=list)  # producers' batches

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1))

    @classmethod
    def read(cls, path: Path) -> Seed:
        return cls(**json.loads(path.read_text()))


def _projected(client: PlatformClient, chain: Chain, timeout: float = 120) -> None:
    """Waits until the query read model holds the chain's last step (the repack's codes)."""
    with grpc.insecure_channel(client.query_address or client.address) as channel:
        query = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout
        code = chain.repacked.output_codes[0]
        while True:
            answer = query.GetOriginInfo(qpb.GetOriginInfoRequest(code=code), timeout=10)
            if answer.status == qpb.ORIGIN_STATUS_GENUINE_ACTIVE and answer.origin.product_name:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the read model has not caught up with {code}")
            time.sleep(0.2)


def seed(client: PlatformClient, chains: int, progress: bool = True) -> Seed:
    """`chains` supply chains and a regulator of the origin province, on a connect()ed client.
    Every request carries a fresh request id: running it again adds more goods and duplicates
    nothing."""
    result = Seed(query_address=client.query_address or client.address,
                  coding_address=client.coding_address or client.address,
                  sso_address=client.sso_address or client.address,
                  password=client.user_password)
    for number in range(1, chains + 1):
        chain = build_chain(client)
        _projected(client, chain)
        # Codes still on the market: the cooperative's unsold ones and the repacked boxes (the
        # repack consumed codes[4:6]).
        result.scannable_codes += [*chain.codes[:4], *chain.codes[6:],
                                   *chain.repacked.output_codes]
        result.recall_batches.append(chain.batch_id)
        if not result.retailer_username:
            result.retailer_username = chain.retailer_a.username
            result.retailer_codes = chain.codes[2:4]  # what the market sold it
        if progress:
            print(f"[load] seeded chain {number}/{chains}", flush=True)
    result.regulator_username = client.create_regulator(RECALL_JURISDICTION)
    return result
