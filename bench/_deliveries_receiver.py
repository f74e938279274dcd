"""
bench/deliveries.py's receiver: raw asyncio HTTP/1.1 in its own process (`deliveries.py --serve-receiver
PORT`), answering 200 (or 503 while told to be unavailable) and counting what it got; the loader processes
that measure its raw capacity (`deliveries.py --load-receiver SPEC`), phase (1).
"""

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _harness import (
    free_port,
    spawn,
    stop_pid,
    tail,
)

EVENT_TYPE = "integration.status_changed"
# The receiver and the loaders run as `deliveries.py --serve-receiver PORT` / `--load-receiver SPEC`.
DELIVERIES = Path(__file__).with_name("deliveries.py")


# --- the receiver (its own process: `deliveries.py --serve-receiver PORT`) -----------------------------

OK_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nunavailable"
)


class ReceiverState:
    """What the receiver answers (200 or 503) and every webhook request it got: (arrival, id, status, tag)."""

    def __init__(self):
        self.status = 200
        self.records: list[tuple[float, str, int, str]] = []


class ReceiverProtocol(asyncio.Protocol):
    """
    Minimal HTTP/1.1 with keep-alive: Content-Length bodies (what httpx sends), no pipelining needed.
    POST /hook/<tag> records (time.time() on arrival, webhook-id, status answered, tag) and answers 200 or
    503; /__control/… reads the records and switches the answer.
    """

    def __init__(self, state: ReceiverState):
        self.state = state
        self.buffer = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            arrived = time.time()
            method, target = lines[0].split(" ", 2)[:2]
            self.transport.write(self.answer(method, target, headers, body, arrived))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def answer(self, method, target, headers, body, arrived) -> bytes:
        state = self.state
        if target.startswith("/hook/"):
            state.records.append((arrived, headers.get("webhook-id", ""), state.status, target[6:]))
            return OK_ANSWER if state.status == 200 else UNAVAILABLE_ANSWER
        path, _, query = target.partition("?")
        params = dict(part.partition("=")[::2] for part in query.split("&") if part)
        if path == "/__control/records":
            start = int(params.get("from", 0))
            text = "".join(f"{t:.6f}\t{i}\t{s}\t{g}\n" for t, i, s, g in state.records[start:])
            return _plain(200, text)
        if path == "/__control/status" and method == "PUT":
            state.status = int(params["code"])
            return _plain(200, str(state.status))
        if path == "/__control/ping":
            return _plain(200, "ok")
        return _plain(404, "not found")


def _plain(status: int, text: str) -> bytes:
    body = text.encode()
    reason = {200: "OK", 404: "Not Found"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def serve_receiver(port: int) -> int:
    async def serve():
        state = ReceiverState()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ReceiverProtocol(state), "127.0.0.1", port, backlog=1024, reuse_address=True
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(serve())
    return 0


@dataclass
class Receiver:
    """The bench's handle on the receiver process."""

    base: str
    pid: int
    control: httpx.Client
    seen: int = 0  # records already fetched
    records: list[tuple[float, str, int, str]] = field(default_factory=list)

    def hook(self, tag: str) -> str:
        return f"{self.base}/hook/{tag}"

    def set_status(self, code: int) -> None:
        self.control.put(f"/__control/status?code={code}").raise_for_status()

    def fetch(self) -> list[tuple[float, str, int, str]]:
        """Every record so far (fetched incrementally)."""
        response = self.control.get(f"/__control/records?from={self.seen}")
        response.raise_for_status()
        for line in response.text.splitlines():
            arrived, webhook_id, status, tag = line.split("\t")
            self.records.append((float(arrived), webhook_id, int(status), tag))
        self.seen = len(self.records)
        return self.records

    def of(self, tag: str) -> list[tuple[float, str, int]]:
        return [(t, i, s) for t, i, s, g in self.fetch() if g == tag]


def start_receiver(stack: contextlib.ExitStack, folder: Path) -> Receiver:
    for _attempt in range(3):
        port = free_port()
        log = folder / "receiver.log"
        with log.open("ab") as out:
            proc = spawn(
                [sys.executable, DELIVERIES, "--serve-receiver", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        stack.callback(stop_pid, proc.pid, signal.SIGTERM, "receiver")
        base = f"http://127.0.0.1:{port}"
        control = httpx.Client(base_url=base, timeout=30, trust_env=False)
        stack.callback(control.close)
        for _ in range(100):
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if control.get("/__control/ping").status_code == 200:
                    print(f"  receiver (raw asyncio HTTP/1.1) on 127.0.0.1:{port} (pid {proc.pid})")
                    return Receiver(base, proc.pid, control)
            time.sleep(0.05)
        stop_pid(proc.pid, signal.SIGTERM, "receiver")
    raise SystemExit(f"The receiver did not start:\n{tail(folder / 'receiver.log')}")


# --- (1) the receiver's raw capacity: loader processes (`deliveries.py --load-receiver SPEC`) ----------


def load_receiver(spec: dict) -> int:
    """Threads over one pooled httpx client (outbound.client()'s limits) POST until the end; print JSON."""
    concurrency = spec["threads"]
    client = httpx.Client(
        follow_redirects=False,
        timeout=httpx.Timeout(15.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max(concurrency * 2, 10),
            max_keepalive_connections=max(concurrency * 2, 10),
            keepalive_expiry=30,
        ),
        headers={"user-agent": "Switchyard-Webhooks/1.0"},
        trust_env=False,
    )
    body = json.dumps(
        {
            "id": "evt_" + "0" * 24,
            "type": EVENT_TYPE,
            "created_at": "2025-01-01T00:00:00.000000Z",
            "sequence": 1,
            "data": {"id": "1", "name": "Bench", "status": "connected", "previous": "connecting", "seq": 0},
        },
        separators=(",", ":"),
    ).encode()
    measure_from = spec["start_at"] + spec["warmup"]
    until = measure_from + spec["seconds"]
    results = [{"ok": 0, "errors": 0, "latencies": [], "samples": []} for _ in range(concurrency)]

    def worker(index: int) -> None:
        tally, n = results[index], 0
        while (began := time.time()) < until:
            n += 1
            headers = {
                "content-type": "application/json",
                "webhook-id": f"{spec['prefix']}-{index}-{n}",
                "webhook-timestamp": str(int(began)),
                "webhook-signature": "v1,bench",
            }
            try:
                response = client.post(spec["url"], content=body, headers=headers)
                ok = response.status_code == 200
                problem = None if ok else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            if ok:
                tally["ok"] += 1
                if began >= measure_from:
                    tally["latencies"].append(time.time() - began)
            else:
                tally["errors"] += 1
                if len(tally["samples"]) < 3:
                    tally["samples"].append(problem)

    time.sleep(max(0.0, spec["start_at"] - time.time()))
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.time()))
    cpu_before = time.process_time()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_before
    client.close()
    print(
        json.dumps(
            {
                "ok_all": sum(r["ok"] for r in results),
                "errors": sum(r["errors"] for r in results),
                "samples": [s for r in results for s in r["samples"]][:3],
                "latencies": [round(lat, 6) for r in results for lat in r["latencies"]],
                "cpu_s": cpu,
            }
        )
    )
    return 0
