"""oslo.messaging RPC call and cast, over any transport URL: rpcmm's ``zmq://`` or ``rabbit://``.

Both transports are measured by the same code, the shape of ``05_rabbit_oslo.py``: an RPC
server (``executor='threading'``) in a child process, a client here; 100 warm-up calls, then
``n`` timed ``call()`` round trips and ``n`` ``cast()`` whose throughput is counted when the
server has processed the last one (it prints the time).

oslo.messaging 18.3 registers its tracing options on the global ``cfg.CONF`` only, so a
private ``cfg.ConfigOpts()`` fails at call time (``NoSuchOptError``): both sides use ``cfg.CONF``.
"""

import importlib
import sys
import threading
import time

from benchmarks import servers
from benchmarks.measure import latency_summary

__all__ = ["TOPIC", "driver_status", "server_main", "measure"]

TOPIC = "rpcmmbench"


def driver_status():
    """None if ``transport_url = zmq://`` can be used, else why not."""
    try:
        importlib.import_module("oslo_messaging")
    except ImportError:
        return "oslo.messaging not installed (pip install oslo.messaging)"
    try:
        importlib.import_module("rpcmm.oslo.driver")
    except ImportError as exc:
        return f"not available yet (rpcmm.oslo.driver does not import: {exc})"
    return None


def _conf(config_file):
    from oslo_config import cfg
    conf = cfg.CONF
    conf(["--config-file", config_file] if config_file else [], project="rpcmm-bench")
    return conf


def server_main(url, config_file=None):
    """The child process: an RPC server with ``echo`` (calls) and ``count`` (casts) endpoints.

    It prints READY, ``CASTS_DONE <time>`` when the announced number of casts arrived, and stops
    when its stdin closes or says anything.
    """
    import oslo_messaging as om
    conf = _conf(config_file)
    transport = om.get_rpc_transport(conf, url=url)
    lock = threading.Lock()
    state = {"casts": 0, "target": None}

    class Endpoint:
        def echo(self, ctxt, x):
            return x

        def reset(self, ctxt, n):
            with lock:
                state["casts"], state["target"] = 0, n
            return True

        def count(self, ctxt, x):
            with lock:
                state["casts"] += 1
                if state["casts"] == state["target"]:
                    print(f"CASTS_DONE {time.time():.6f}", flush=True)

    server = om.get_rpc_server(transport, om.Target(topic=TOPIC, server="s1"), [Endpoint()],
                               executor="threading", access_policy=om.DefaultRPCAccessPolicy)
    server.start()
    print("READY", flush=True)
    try:
        sys.stdin.readline()
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def _read_done(server, timeout):
    """The time the server reported its last cast, within ``timeout`` seconds."""
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(server.popen.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"casts not all processed within {timeout:g}s")
    line = server.popen.stdout.readline()
    if not line.startswith("CASTS_DONE"):
        raise RuntimeError(f"oslo server said {line!r}")
    return float(line.split()[1])


def measure(url, n, runs, config_file=None, name="oslo"):
    """Call latency and cast throughput over ``url``: per run, a latency summary and casts/s."""
    import oslo_messaging as om
    srv = servers.start_role("oslo_server", url, *([config_file] if config_file else []),
                             name=f"{name}-server", stdin=True, timeout=60)
    transport = None
    try:
        conf = _conf(config_file)
        transport = om.get_rpc_transport(conf, url=url)
        client = om.get_rpc_client(transport, om.Target(topic=TOPIC), timeout=10)
        t = time.perf_counter()
        client.call({}, "echo", x=0)
        first_call_s = time.perf_counter() - t
        for i in range(100):
            client.call({}, "echo", x=i)
        pc = time.perf_counter_ns
        result = {"first_call_s": round(first_call_s, 3), "runs": []}
        for _ in range(runs):
            lat = [0] * n
            for i in range(n):
                t0 = pc()
                if client.call({}, "echo", x=i) != i:
                    raise RuntimeError("echo returned a wrong value")
                lat[i] = pc() - t0
            call = latency_summary(lat)
            client.call({}, "reset", n=n)
            t0 = time.time()
            for i in range(n):
                client.cast({}, "count", x=i)
            sent = time.time()
            done = _read_done(srv, 120)
            result["runs"].append({"call": call, "samples_ns": lat, "cast_per_s": n / (done - t0),
                                   "cast_sent_per_s": n / (sent - t0)})
        return result
    finally:
        if transport is not None:
            transport.cleanup()
        try:
            srv.popen.stdin.write("stop\n")
            srv.popen.stdin.flush()
            srv.popen.wait(timeout=30)
        except Exception:
            pass
        srv.stop()
