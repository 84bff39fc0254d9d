"""The local stack really starts, serves only on loopback, refuses misuse and stops cleanly."""

import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mofi.stack import Stack, StackError, find_binary, pid_alive
from tests.conftest import stack_settings


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the LISTEN sockets held by ``pid`` (from /proc, no extra tools)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN
                out.add(cols[1].split(":")[0][:width])
    return out


def test_up_status_second_up_starts_nothing_down(tmp_path):
    stack = Stack(stack_settings(tmp_path, storage="memory"))
    statuses = stack.up()
    try:
        assert [(s.healthy, s.started) for s in statuses] == [(True, True), (True, True)]
        again = stack.up()
        assert [(s.healthy, s.started) for s in again] == [(True, False), (True, False)]
        assert [s.pid for s in again] == [s.pid for s in statuses]
        for s in stack.status():
            addrs = _listening_addresses(s.pid)
            assert addrs, f"{s.name} listens on nothing"
            # 0100007F is 127.0.0.1 in /proc's little-endian hex; nothing on 0.0.0.0 or ::
            assert addrs == {"0100007F"}, f"{s.name} listens beyond loopback: {addrs}"
        pids = [s.pid for s in stack.status()]
    finally:
        stack.down()
    assert not any(s.running for s in stack.status())
    assert not any(pid_alive(pid) for pid in pids), "a server survived `down`"
    assert not list((tmp_path / "run").glob("*.pid"))


def test_port_taken_is_reported(tmp_path):
    settings = stack_settings(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.stack.kafka_port))
        squatter.listen()
        with pytest.raises(StackError, match=f"Kafka {settings.stack.kafka_port}"):
            Stack(settings).up()
    assert not any(s.running for s in Stack(settings).status())


def test_missing_binary_is_reported():
    with pytest.raises(StackError, match="not found"):
        find_binary("no-such-server")


def test_stack_settings_reach_the_stack_by_derived_endpoints(tmp_path):
    settings = stack_settings(tmp_path)
    assert settings.kafka.bootstrap_servers == settings.stack.kafka_address == f"127.0.0.1:{settings.stack.kafka_port}"
    assert settings.s3.endpoint == settings.stack.s3_address == f"127.0.0.1:{settings.stack.s3_port}"
    assert Stack(settings).root == tmp_path.resolve()


def test_up_brings_back_a_killed_broker_and_leaves_s3_alone(tmp_path):
    stack = Stack(stack_settings(tmp_path, storage="s3"))
    first = {s.name: s for s in stack.up()}
    try:
        os.killpg(first["kafka"].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(first["kafka"].pid):
            assert time.monotonic() < deadline, "the broker survived SIGKILL"
            time.sleep(0.05)
        assert [(s.name, s.healthy) for s in stack.status()] == [("s3", True), ("kafka", False)]
        after = {s.name: s for s in stack.up()}
        assert after["s3"].pid == first["s3"].pid and not after["s3"].started  # untouched
        assert after["kafka"].started and after["kafka"].healthy and after["kafka"].pid != first["kafka"].pid
        assert "(started now)" in after["kafka"].line()
    finally:
        stack.down()


def test_object_store_filer_refuses_requests_without_credentials(running_stack, store, unique):
    """The filer's HTTP port (the S3 gateway's backend) reads, writes and deletes nothing for a caller without
    the store's keys, while the S3 API with credentials works."""
    uri = f"s3://filer-{unique}/models/latest.pt"
    store.put_bytes(uri, b"the real model")
    filer = running_stack.cfg.s3_internal_port_base + Stack.S3_PORT_OFFSETS["filer.port"]
    url = f"http://{running_stack.cfg.host}:{filer}/buckets/filer-{unique}/models/latest.pt"
    for method, data in (("GET", None), ("PUT", b"poisoned"), ("POST", b"poisoned"), ("DELETE", None)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10)
        assert refused.value.code == 401, (method, refused.value.code)
    assert store.get_bytes(uri) == b"the real model"
    keys = Path(running_stack.cfg.data_dir) / "s3" / "security.toml"
    assert keys.stat().st_mode & 0o077 == 0  # the keys are readable by their owner only


def test_object_store_takes_writes_to_many_buckets(store, unique):
    # every bucket is a volume of its own; weed's default limit refused writes after about 50 buckets
    for i in range(80):
        store.put_bytes(f"s3://many-{unique}-{i:02d}/obj", b"x")
    assert all(store.get_bytes(f"s3://many-{unique}-{i:02d}/obj") == b"x" for i in range(80))
