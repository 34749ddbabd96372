"""The ops side in process: a streamed reply counted once, conditions logged once, and its narrow imports."""

from __future__ import annotations

import ast
import logging
import socket

import dns.message

from server.ops.metrics import Observer
from server.serve.conditionlog import ConditionLog
from tests.serverproc import ROOT


def samples_of(observer: Observer) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value for family in observer.collect() for s in family.samples}


async def test_a_streamed_reply_counts_as_one_response_with_its_first_message():
    query = dns.message.make_query("pods.example.internal", "SOA").to_wire()
    first = bytearray(dns.message.make_response(dns.message.make_query("pods.example.internal", "SOA")).to_wire())
    messages = [bytes(first) + b"\0" * 500, b"\0" * 3000, b"\0" * 3000]

    async def transfer():
        for message in messages:
            yield message

    observer = Observer()
    handler = observer.wrap_handler(lambda q, tcp, peer: transfer(), socket.AF_INET, True)
    stream = handler(query, True, ("127.0.0.1", 1))
    assert [m async for m in stream] == messages
    samples = samples_of(observer)
    assert samples[("poddns_dns_requests_total", frozenset({("proto", "tcp"), ("family", "1"), ("type", "SOA")}))] == 1
    assert samples[("poddns_dns_responses_total", frozenset({("rcode", "NOERROR")}))] == 1
    assert samples[("poddns_dns_response_size_bytes_count", frozenset({("proto", "tcp")}))] == 1
    assert samples[("poddns_dns_response_size_bytes_sum", frozenset({("proto", "tcp")}))] == len(messages[0])
    assert samples[("poddns_dns_request_duration_seconds_count", frozenset())] == 1


async def test_closing_a_counted_stream_early_closes_the_handlers_stream():
    closed = []

    async def endless():
        try:
            while True:
                yield b"\0" * 12
        finally:
            closed.append(True)

    observer = Observer()
    stream = observer.wrap_handler(lambda q, tcp, peer: endless(), socket.AF_INET, True)(b"\0" * 17, True, ("127.0.0.1", 1))
    async for _ in stream:
        break
    await stream.aclose()
    assert closed == [True]


def test_a_condition_is_logged_once_while_it_lasts_and_again_after_a_quiet_spell(caplog):
    now = [0.0]
    condition = ConditionLog(logging.getLogger("test.condition"), quiet=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.condition"):
        for _ in range(1000):  # one every 0.1 s: one line
            condition("limit %d reached", 5)
            now[0] += 0.1
        now[0] += 61
        assert condition("limit %d reached", 5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["limit 5 reached", "limit 5 reached (999 more occurrences went unlogged before this)"]


def server_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Every server.* module `module` imports, directly or through others (type-checking imports excluded)."""
    seen = set() if seen is None else seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module or "")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("server") and name not in seen:
                if (ROOT / (name.replace(".", "/") + ".py")).exists() or (ROOT / name.replace(".", "/") / "__init__.py").exists():
                    seen.add(name)
                    server_imports(name, seen)
    return seen


def test_ops_imports_nothing_of_app_registry_sources_or_the_zone_store():
    imported = set().union(*(server_imports(f"server.ops.{name}") for name in ("metrics", "http", "httpgate", "status")))
    assert "server.serve.transport" in imported  # the walk does follow imports
    bad = sorted(m for m in imported if m == "server.app" or m.startswith(("server.registry", "server.sources", "server.zone.store")))
    assert not bad


def test_the_file_skip_reasons_are_the_sources_own():
    from server.ops.metrics import FILE_SKIP_REASONS
    from server.sources.problems import REASONS

    assert FILE_SKIP_REASONS == REASONS
