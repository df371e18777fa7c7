"""Logging from rpcmm's native threads while green threads log too, under eventlet.

    python tests/functional/eventlet_native_logging_program.py

An embedded-style registry (its loop on a native thread) logs a line for every host that
joins while a green thread logs as fast as it can through the same handler, whose lock
monkey_patch made green. Runs 5 s; prints ``joins N relayed M app K`` and exits 0, or prints
``HANG`` and exits 1 if nothing moved for two seconds.
"""

import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from eventlet import patcher  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from rpcmm import protocol  # noqa: E402
from rpcmm.client import RegistryClient  # noqa: E402
from rpcmm.runtime import default_runtime  # noqa: E402
from rpcmm import server as server_module  # noqa: E402
from rpcmm.server import RegistryServer  # noqa: E402

real_threading = patcher.original("threading")
real_time = patcher.original("time")


class Counting(logging.Handler):
    joined = 0

    def emit(self, record):
        if "joined" in record.getMessage():
            Counting.joined += 1


def main():
    logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)
    logging.getLogger().addHandler(Counting())
    runtime = default_runtime()
    assert runtime.name == "eventlet"
    # Every join a line: this measures the relay from native threads, not the registry's
    # own limit on host-event lines (which would keep all but 16 a second back).
    server_module._HOST_EVENT_LINES = 10**9
    server = RegistryServer("127.0.0.1:0", runtime=runtime).start()
    context = runtime.new_context()
    client = RegistryClient([server.endpoint], context, runtime).start()
    progress = [0, 0]

    def watchdog():  # native: runs even if every green thread is stuck
        last = None
        while True:
            real_time.sleep(2.0)
            now = (progress[0], server.stats.joined)
            if now == last:
                print(f"HANG: app lines {progress[0]}, joins {server.stats.joined}", flush=True)
                os._exit(1)
            last = now

    real_threading.Thread(target=watchdog, daemon=True).start()
    app = logging.getLogger("app")
    deadline = real_time.monotonic() + 5.0

    def app_logging():
        while real_time.monotonic() < deadline:
            app.info("app line %d", progress[0])
            progress[0] += 1
            if progress[0] % 50 == 0:
                eventlet.sleep(0)

    def joining():
        n = 0
        while real_time.monotonic() < deadline:
            client.cast(protocol.Heartbeat((protocol.HostState(f"h{n}", 30.0, 90.0, ("t",)),)))
            n += 1
            progress[1] = n
            if n % 20 == 0:
                eventlet.sleep(0.001)

    workers = [eventlet.spawn(app_logging), eventlet.spawn(joining)]
    for worker in workers:
        worker.wait()
    eventlet.sleep(0.5)  # the last joins are handled and relayed
    client.close()
    server.stop()
    context.term()
    eventlet.sleep(0.2)
    print(f"joins {server.stats.joined} relayed {Counting.joined} app {progress[0]}", flush=True)


if __name__ == "__main__":
    main()
