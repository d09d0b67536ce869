"""The query service end to end, in both run modes (see conftest.platform), on the flow
issue's cross-province chain (agritrace_testing.chain): Shandong cooperative → Beijing
wholesale market → two Beijing retailers, one of which repacks. The read model is filled by
the events of registry, coding and flow (RabbitMQ and a nameko worker, or in-process), so
every check waits until it has caught up."""

from __future__ import annotations

import re
import secrets
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from google.type import date_pb2

from agritrace.query.v1 import query_pb2 as pb
from agritrace.query.v1 import query_pb2_grpc
from agritrace_coding.domain import codes as code_format
from agritrace_testing.chain import CHAOYANG, HAIDIAN, SHOUGUANG, Chain, Party, build_chain
from agritrace_testing.grpc_errors import error_reason
from agritrace_testing.polling import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def query_as(platform, token: str | None) -> query_pb2_grpc.QueryServiceStub:  # type: ignore[no-untyped-def]
    return query_pb2_grpc.QueryServiceStub(platform.channel_as(token, platform.query_address))


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def subjects_of(graph: pb.TraceGraph) -> set[str]:
    return {node.subject_id for node in graph.nodes}


def nodes_by_subject(graph: pb.TraceGraph) -> dict[str, list[pb.TraceNode]]:
    found: dict[str, list[pb.TraceNode]] = {}
    for node in graph.nodes:
        found.setdefault(node.subject_id, []).append(node)
    return found


def today() -> date_pb2.Date:
    now = datetime.now(UTC) + timedelta(hours=8)
    return date_pb2.Date(year=now.year, month=now.month, day=now.day)


def a_week_ago() -> date_pb2.Date:
    then = datetime.now(UTC) + timedelta(hours=8) - timedelta(days=7)
    return date_pb2.Date(year=then.year, month=then.month, day=then.day)


@pytest.fixture(scope="module")
def chain(platform) -> Chain:  # type: ignore[no-untyped-def]
    built = build_chain(platform)
    consumer = query_as(platform, None)

    def caught_up() -> None:
        # The last steps of the chain (the repack's new codes and their batch, the
        # retailers' receipts) are in the read model. A new code can be active there before
        # its batch is (coding's and flow's events arrive in either order): its scan then
        # answers without an origin until the batch's event is projected.
        repacked = consumer.GetOriginInfo(pb.GetOriginInfoRequest(
            code=built.repacked.output_codes[0]))
        assert repacked.status == pb.ORIGIN_STATUS_GENUINE_ACTIVE, repacked
        assert repacked.origin.product_name, repacked
        consumed = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code=built.codes[4]))
        assert consumed.status == pb.ORIGIN_STATUS_CONSUMED, consumed

    eventually(caught_up, timeout=60)
    return built


@pytest.fixture(scope="module")
def regulators(platform) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Access tokens of regulators by jurisdiction ("" national)."""
    return {jurisdiction: platform.new_regulator(jurisdiction)
            for jurisdiction in ("", "37", "3707", SHOUGUANG, "11", "44")}


def test_a_consumer_scan_shows_the_origin_and_nothing_after(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    consumer = query_as(platform, None)
    # Typed by hand from the label: lower case, spaces, an O for a 0.
    typed = " ".join(chain.codes[6][i:i + 4] for i in range(0, 16, 4)).lower()
    answer = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code=typed))
    assert answer.code == chain.codes[6]
    assert answer.status == pb.ORIGIN_STATUS_GENUINE_ACTIVE and answer.message
    origin = answer.origin
    assert (origin.product_code, origin.product_name) == ("010403001", "寿光番茄")
    assert origin.category == "PLANT/VEGETABLE/SOLANACEOUS"
    assert origin.producer_name == "寿光市绿源蔬菜专业合作社"
    assert origin.producer_division_code == SHOUGUANG
    assert "寿光" in origin.producer_division_name
    assert origin.origin_division_code == SHOUGUANG and "寿光" in origin.origin_division_name
    harvested = datetime.now(UTC) - timedelta(days=3)
    assert origin.production_date.year == harvested.year
    certificate = origin.certificate
    assert certificate.producer_name == "寿光市绿源蔬菜专业合作社"
    assert certificate.basis and certificate.test_result == "农残速测 合格"
    assert certificate.contact_phone_masked == "139****1234"
    assert origin.inspections.passed == 1 and origin.inspections.failed == 0
    assert list(origin.flags) == []
    # Origin only: nothing of the market or the retailers that handled the goods later.
    shown = str(answer)
    for later in ("新发地", "朝阳生鲜超市", "海淀社区菜店", chain.market.subject_id,
                  chain.retailer_a.subject_id):
        assert later not in shown

    # The code the repack consumed says so; the repack's new code shows its own origin.
    assert consumer.GetOriginInfo(pb.GetOriginInfoRequest(
        code=chain.codes[4])).status == pb.ORIGIN_STATUS_CONSUMED
    repacked = consumer.GetOriginInfo(pb.GetOriginInfoRequest(
        code=chain.repacked.output_codes[0]))
    assert repacked.origin.product_name == "精品番茄礼盒"
    assert repacked.origin.origin_division_code == HAIDIAN


def metric_value(platform, name: str, labels: str) -> float:  # type: ignore[no-untyped-def]
    port = platform.query_metrics_port or platform.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_unknown_codes_are_said_plainly_and_repeated_ones_signal_counterfeits(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    consumer = query_as(platform, None)
    malformed = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code="NOT-A-CODE"))
    assert malformed.status == pb.ORIGIN_STATUS_MALFORMED and malformed.message
    # A county of this run's own: the count of a place lives 10 minutes in Redis, which other
    # runs share.
    county = f"44{secrets.randbelow(10_000):04d}"
    place = (("x-scan-division", county),)
    before = metric_value(platform, "agritrace_query_counterfeit_signals_total",
                          f'place="{county}"')
    for code in code_format.new_codes("44", 6):  # genuine-looking, never issued
        answer = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code=code), metadata=place)
        assert answer.status == pb.ORIGIN_STATUS_UNKNOWN and answer.message
        assert not answer.HasField("origin")
    # Six unknown codes from one place within minutes: one signal for the place.
    assert metric_value(platform, "agritrace_query_counterfeit_signals_total",
                        f'place="{county}"') == before + 1


def test_a_subject_sees_one_node_up_and_one_node_down(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    batch_id = chain.batch_id
    coop, market, a, b = chain.coop, chain.market, chain.retailer_a, chain.retailer_b

    def view(party: Party) -> set[str]:
        graph = query_as(platform, party.token).TraceBatch(
            pb.TraceBatchRequest(batch_id=batch_id)).graph
        return subjects_of(graph)

    # The cooperative: itself and whom it sold to, not the market's customers.
    assert view(coop) == {coop.subject_id, market.subject_id}
    # The market: the cooperative it bought from and the two retailers it sold to.
    assert view(market) == {coop.subject_id, market.subject_id,
                                               a.subject_id, b.subject_id}
    # A retailer: the market, never the cooperative two hops up or the other retailer.
    assert view(a) == {market.subject_id, a.subject_id}
    assert view(b) == {market.subject_id, b.subject_id}
    # By code, the same rule.
    graph = query_as(platform, a.token).TraceCode(
        pb.TraceCodeRequest(code=chain.codes[2])).graph
    assert subjects_of(graph) == {market.subject_id, a.subject_id}

    # A subject that never handled the goods learns nothing, not even that they exist.
    stranger = platform.new_operator(CHAOYANG, name="路人果蔬店")
    error = rpc_error(query_as(platform, stranger.token).TraceBatch,
                      pb.TraceBatchRequest(batch_id=batch_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # Regulators use the recall traces instead; consumers must sign in.
    error = rpc_error(query_as(platform, platform.new_regulator("37")).TraceBatch,
                      pb.TraceBatchRequest(batch_id=batch_id))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = rpc_error(query_as(platform, None).TraceBatch,
                      pb.TraceBatchRequest(batch_id=batch_id))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_recall_by_the_origin_province_reaches_the_other_province_retailers(  # type: ignore[no-untyped-def]
    platform, chain: Chain, regulators: dict[str, str],
) -> None:
    coop, market, a, b = chain.coop, chain.market, chain.retailer_a, chain.retailer_b
    forward = query_as(platform, regulators["37"]).TraceForward(
        pb.TraceForwardRequest(batch_id=chain.batch_id, depth=10)).graph
    found = nodes_by_subject(forward)
    # Every downstream holder, across the province border and through the repack.
    assert {coop.subject_id, market.subject_id, a.subject_id, b.subject_id} <= set(found)
    assert chain.repacked.output.batch_id in {node.batch_id for node in forward.nodes}
    assert not forward.truncated
    # Shandong's own cooperative in full; Beijing's holders only as identity and division.
    assert all(not node.redacted and node.subject_name for node in found[coop.subject_id])
    for retailer, county in ((a, CHAOYANG), (b, HAIDIAN)):
        for node in found[retailer.subject_id]:
            assert node.redacted and node.division_code == county
            assert not node.subject_name
    assert forward.scope == "JURISDICTION:37"

    # Beijing's regulator sees its market and retailers in full, the cooperative redacted.
    beijing = nodes_by_subject(query_as(platform, regulators["11"]).TraceForward(
        pb.TraceForwardRequest(batch_id=chain.batch_id, depth=10)).graph)
    assert all(node.redacted for node in beijing[coop.subject_id])
    assert all(not node.redacted for node in beijing[a.subject_id])
    # The national regulator sees everything in full.
    national = query_as(platform, regulators[""]).TraceForward(
        pb.TraceForwardRequest(batch_id=chain.batch_id, depth=10)).graph
    assert not any(node.redacted for node in national.nodes)
    # Depth is the caller's: one hand-over from the creator reaches the market only.
    shallow = subjects_of(query_as(platform, regulators[""]).TraceForward(
        pb.TraceForwardRequest(batch_id=chain.batch_id, depth=1)).graph)
    assert shallow == {coop.subject_id, market.subject_id}

    # Trace back from a code of the repack, through the derivation, to the cooperative.
    back = query_as(platform, regulators["11"]).TraceBack(pb.TraceBackRequest(
        code=chain.repacked.output_codes[0], depth=10)).graph
    assert {coop.subject_id, market.subject_id, b.subject_id} <= subjects_of(back)
    assert a.subject_id not in subjects_of(back)

    # Subjects and consumers may not run recall traces.
    error = rpc_error(query_as(platform, a.token).TraceForward,
                      pb.TraceForwardRequest(batch_id=chain.batch_id))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and error_reason(error)
    error = rpc_error(query_as(platform, None).TraceBack,
                      pb.TraceBackRequest(batch_id=chain.batch_id))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = rpc_error(query_as(platform, regulators["37"]).TraceForward,
                      pb.TraceForwardRequest(batch_id=chain.batch_id, depth=999))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_statistics_by_division(  # type: ignore[no-untyped-def]
    platform, chain: Chain, regulators: dict[str, str],
) -> None:
    period = {"start_date": a_week_ago(), "end_date": today()}

    def nation() -> dict[str, pb.DivisionStatistics]:
        answer = query_as(platform, regulators[""]).GetStatistics(
            pb.GetStatisticsRequest(division_code="", **period))
        children = {row.division_code: row for row in answer.children}
        assert children["37"].cross_province_out >= 1, children
        return children

    provinces = eventually(nation)
    shandong, beijing = provinces["37"], provinces["11"]
    assert shandong.codes_issued >= 10 and shandong.codes_activated >= 10
    assert shandong.flows >= 1 and shandong.subjects_registered >= 1
    assert beijing.cross_province_in >= 1 and beijing.market_entries >= 1
    assert beijing.flows >= 2  # the market's sales to the two retailers
    assert 0 < shandong.usage_rate <= 1
    assert shandong.scans >= 1  # the consumer scans above
    # A province sees its cities; the county's regulator its county, not its neighbour's.
    cities = query_as(platform, regulators["37"]).GetStatistics(
        pb.GetStatisticsRequest(division_code="37", **period))
    assert "3707" in {row.division_code for row in cities.children}
    error = rpc_error(query_as(platform, regulators["37"]).GetStatistics,
                      pb.GetStatisticsRequest(division_code="11", **period))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def log_entries(platform, token: str, **filters: object) -> list[pb.QueryLogEntry]:  # type: ignore[no-untyped-def]
    stub, entries, page_token = query_as(platform, token), [], ""
    while True:
        page = stub.ListQueryLogs(pb.ListQueryLogsRequest(
            page_size=200, page_token=page_token, **filters))  # type: ignore[arg-type]
        entries.extend(page.entries)
        page_token = page.next_page_token
        if not page_token:
            return entries


def tamper(platform, seq: int, scope: str) -> str:  # type: ignore[no-untyped-def]
    """Rewrites one stored log entry's scope behind the service's back; returns the old one."""
    if platform.mode == "microservices":
        url = platform.env["AGRITRACE_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute("SELECT scope FROM query.query_log WHERE seq = %s",
                                     (seq,)).fetchone()
            connection.execute("UPDATE query.query_log SET scope = %s WHERE seq = %s",
                               (scope, seq))
    else:
        path = Path(platform.env["AGRITRACE_DATA_DIR"]) / "query.db"
        with sqlite3.connect(path, timeout=10) as connection:
            row = connection.execute("SELECT scope FROM query_log WHERE seq = ?",
                                     (seq,)).fetchone()
            connection.execute("UPDATE query_log SET scope = ? WHERE seq = ?", (scope, seq))
    assert row is not None
    return str(row[0])


def test_every_query_is_logged_and_tampering_is_detected(  # type: ignore[no-untyped-def]
    platform, chain: Chain, regulators: dict[str, str],
) -> None:
    code = chain.codes[7]
    query_as(platform, None).GetOriginInfo(pb.GetOriginInfoRequest(code=code))
    query_as(platform, chain.retailer_a.token).TraceBatch(
        pb.TraceBatchRequest(batch_id=chain.batch_id))
    query_as(platform, regulators["37"]).TraceForward(
        pb.TraceForwardRequest(batch_id=chain.batch_id, depth=3))
    rpc_error(query_as(platform, chain.retailer_a.token).TraceBack,
              pb.TraceBackRequest(batch_id=chain.batch_id))

    def logged() -> list[pb.QueryLogEntry]:
        entries = log_entries(platform, platform.admin_token)
        asked = {(e.rpc, e.role, e.outcome, e.target) for e in entries}
        assert ("GetOriginInfo", "CONSUMER", "OK", code) in asked, asked
        assert ("TraceBatch", "SUBJECT_OPERATOR", "OK", chain.batch_id) in asked
        assert ("TraceForward", "REGULATOR", "OK", chain.batch_id) in asked
        assert ("TraceBack", "SUBJECT_OPERATOR", "DENIED", chain.batch_id) in asked
        return entries

    entries = eventually(logged, timeout=10)
    consumer_entry = next(e for e in entries if e.rpc == "GetOriginInfo" and e.target == code)
    assert consumer_entry.asker.startswith("anon:") and consumer_entry.scope == "ORIGIN_ONLY"
    assert consumer_entry.target_division == SHOUGUANG
    # The earlier tests' queries are there too: every scan, trace and statistic.
    rpcs = {e.rpc for e in entries}
    assert {"GetOriginInfo", "TraceCode", "TraceBatch", "TraceBack", "TraceForward",
            "GetStatistics"} <= rpcs
    # Shandong's regulator reads the log of queries about Shandong's goods only.
    shandong = log_entries(platform, regulators["37"])
    assert shandong and all(e.target_division.startswith("37") for e in shandong)
    error = rpc_error(query_as(platform, chain.retailer_a.token).ListQueryLogs,
                      pb.ListQueryLogsRequest())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    admin = query_as(platform, platform.admin_token)
    last = max(e.seq for e in entries)
    intact = admin.VerifyQueryLog(pb.VerifyQueryLogRequest(first_seq=1, last_seq=last))
    assert intact.ok and intact.entries_checked == last
    original = tamper(platform, consumer_entry.seq, "FULL")
    try:
        broken = admin.VerifyQueryLog(pb.VerifyQueryLogRequest(first_seq=1, last_seq=last))
        assert not broken.ok and broken.first_broken_seq == consumer_entry.seq
        assert broken.problem
    finally:
        tamper(platform, consumer_entry.seq, original)
    assert admin.VerifyQueryLog(pb.VerifyQueryLogRequest(first_seq=1, last_seq=last)).ok


def test_origin_scans_answer_while_the_flow_service_is_down(  # type: ignore[no-untyped-def]
    platform, chain: Chain,
) -> None:
    if platform.mode != "microservices":
        pytest.skip("the all-in-one platform is one process: there is no flow service to kill")
    flow = platform.processes["flow-server"]
    flow.kill()
    flow.wait(timeout=10)
    try:
        answer = query_as(platform, None).GetOriginInfo(pb.GetOriginInfoRequest(
            code=chain.codes[8]))
        assert answer.status == pb.ORIGIN_STATUS_GENUINE_ACTIVE
        assert answer.origin.product_name == "寿光番茄"
        graph = query_as(platform, chain.market.token).TraceBatch(
            pb.TraceBatchRequest(batch_id=chain.batch_id)).graph
        assert chain.coop.subject_id in subjects_of(graph)
    finally:
        platform.restart("flow-server", platform.flow_address)


def test_the_read_model_is_rebuilt_from_the_source_services(  # type: ignore[no-untyped-def]
    platform, chain: Chain, regulators: dict[str, str],
) -> None:
    consumer = query_as(platform, None)
    before = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code=chain.codes[9]))
    period = {"start_date": a_week_ago(), "end_date": today()}
    national = query_as(platform, regulators[""])
    figures = national.GetStatistics(pb.GetStatisticsRequest(division_code="37", **period))
    env = (platform.commands["query-server"][1] if platform.mode == "microservices"
           else platform.env)
    done = subprocess.run([sys.executable, "-m", "agritrace_query", "rebuild", "--restart"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = consumer.GetOriginInfo(pb.GetOriginInfoRequest(code=chain.codes[9]))
    assert after.origin == before.origin and after.status == before.status
    rebuilt = national.GetStatistics(pb.GetStatisticsRequest(division_code="37", **period))
    assert rebuilt.total.codes_issued == figures.total.codes_issued
    assert rebuilt.total.flows == figures.total.flows
    # The query log is never part of a rebuild: it still verifies from its first entry.
    assert query_as(platform, platform.admin_token).VerifyQueryLog(
        pb.VerifyQueryLogRequest(first_seq=1)).ok
