"""Child-process entry points: ``python -m benchmarks.roles ROLE ARGS``.

Each role prints ``READY`` on stdout once it listens (see :func:`benchmarks.servers.start_role`),
and every loop is bounded by a count and by receive timeouts, so a child never outlives a
parent that died.

- ``reply PORT REPLY_BYTES MAX``: a ROUTER on 127.0.0.1:PORT answering each request with a
  fixed REPLY_BYTES-byte frame (the raw zmq anchor of a remote lookup);
- ``handoff PORT REPLY_PORT REPLY_BYTES WORKERS MAX IDLE_S``: a ROUTER on 127.0.0.1:PORT whose
  reading thread hands each request to oslo.messaging's threading executor (a
  ``futurist.ThreadPoolExecutor`` of WORKERS threads); the worker sends a REPLY_BYTES-byte
  frame through its own DEALER to the ROUTER on 127.0.0.1:REPLY_PORT, as a zmq:// server's
  reply goes to the caller's reply socket (the call floor, :class:`benchmarks.anchors.HandoffRoundTrip`);
- ``pub PORT COUNT GAP_US BYTES``: a PUB that, after a line on stdin, publishes COUNT messages
  stamped with CLOCK_MONOTONIC, GAP_US apart (the PUB->SUB anchor of change propagation);
- ``loadgen ENDPOINT SOCKETS``: :mod:`benchmarks.loadgen`;
- ``oslo_server URL [CONFIG_FILE]``: :func:`benchmarks.oslo_rpc.server_main`;
- ``bare_oslo_server PORT REPLY_PORT``: :func:`benchmarks.bare_oslo.server_main`;
- ``eventlet_ceiling``: :func:`benchmarks.oslo_rpc.eventlet_ceiling_main`.
"""

import struct
import sys
import time

_IDLE_TIMEOUT_MS = 30_000


def reply(port, reply_bytes, max_requests):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.RCVTIMEO = _IDLE_TIMEOUT_MS
    s.bind(f"tcp://127.0.0.1:{port}")
    payload = b"h" * int(reply_bytes)
    print("READY", flush=True)
    try:
        for _ in range(int(max_requests)):
            identity, _request = s.recv_multipart(copy=False)
            s.send_multipart([identity, payload], copy=False)
    except zmq.Again:
        pass  # idle: the parent is done
    finally:
        s.close()
        ctx.term()


def handoff(port, reply_port, reply_bytes, workers, max_requests, idle_s):
    import threading

    import futurist
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    # Longer than the reply role's: the oslo section spends up to a minute on cast bursts
    # between two runs of calls.
    s.RCVTIMEO = int(float(idle_s) * 1000)
    s.bind(f"tcp://127.0.0.1:{port}")
    out = ctx.socket(zmq.DEALER)
    out.setsockopt(zmq.LINGER, 0)
    out.connect(f"tcp://127.0.0.1:{reply_port}")
    lock = threading.Lock()  # the workers share one socket, as the driver's outbox does
    payload = b"h" * int(reply_bytes)

    def answer():
        with lock:
            out.send(payload, zmq.NOBLOCK)

    # oslo.messaging's 'threading' executor is this class, sized by executor_thread_pool_size.
    executor = futurist.ThreadPoolExecutor(max_workers=int(workers))
    print("READY", flush=True)
    try:
        for _ in range(int(max_requests)):
            s.recv_multipart(copy=False)
            executor.submit(answer)
    except zmq.Again:
        pass  # idle: the parent is done
    finally:
        executor.shutdown(wait=True)
        s.close()
        out.close()
        ctx.term()


def pub(port, count, gap_us, size):
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 1000)
    s.bind(f"tcp://127.0.0.1:{port}")
    print("READY", flush=True)
    sys.stdin.readline()  # the parent's subscriber is connected and subscribed
    pad = b"p" * max(0, int(size) - 8)
    gap = int(gap_us) / 1e6
    t0 = time.perf_counter()
    for i in range(int(count)):
        due = t0 + i * gap
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        s.send(struct.pack("<q", time.monotonic_ns()) + pad)
    s.send(b"END")
    s.close()
    ctx.term()


def main(argv):
    role, args = argv[0], argv[1:]
    if role == "reply":
        reply(*args)
    elif role == "pub":
        pub(*args)
    elif role == "handoff":
        handoff(*args)
    elif role == "loadgen":
        from benchmarks.loadgen import main as loadgen_main
        loadgen_main(*args)
    elif role == "oslo_server":
        from benchmarks.oslo_rpc import server_main
        server_main(*args)
    elif role == "bare_oslo_server":
        from benchmarks.bare_oslo import server_main as bare_server_main
        bare_server_main(*args)
    elif role == "eventlet_ceiling":
        from benchmarks.oslo_rpc import eventlet_ceiling_main
        eventlet_ceiling_main()
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
