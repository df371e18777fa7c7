"""Green threads queueing commands for the live feed's native loop, under eventlet.

    python tests/functional/eventlet_feed_commands_program.py

Queues 100,000 ``follow`` commands from the main green thread as fast as it can while the
feed's native loop takes them, with the interpreter switching threads as often as it can (so a
race between the two sides is hit in seconds if there is one). Prints ``queued N`` and exits 0,
or prints ``HANG`` and exits 1 if no command was queued for two seconds.

The feed's cache file cannot be written: the warning its loop logs as it stops must have
reached the handlers by the time ``stop()`` returns (``last words logged``), though the loop
ran on a native thread whose records the runtime relays to the hub.
"""

import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from eventlet import patcher  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from rpcmm.addressing import Endpoint  # noqa: E402
from rpcmm.cache import LookupCache  # noqa: E402
from rpcmm.clock import SYSTEM_CLOCK  # noqa: E402
from rpcmm.feed import LiveFeed  # noqa: E402
from rpcmm.runtime import eventlet_runtime  # noqa: E402

COUNT = 100_000
real_threading = patcher.original("threading")
real_time = patcher.original("time")


def main():
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    runtime = eventlet_runtime()
    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("rpcmm").addHandler(Keep(logging.WARNING))
    unwritable = os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-such-directory", "cache.json")
    feed = LiveFeed(LookupCache(lock=runtime.native_lock()), runtime, SYSTEM_CLOCK, timeout=0.05,
                    cache_file=unwritable).start()
    nobody = Endpoint("127.0.0.1", 9)  # nothing listens: the loop only takes the commands
    progress = [0]

    def watchdog():  # a native thread: it runs even if every green thread is stuck
        last = -1
        while True:
            real_time.sleep(2.0)
            if progress[0] == last:
                print(f"HANG after {progress[0]} commands", flush=True)
                os._exit(1)
            last = progress[0]

    real_threading.Thread(target=watchdog, daemon=True).start()
    for n in range(COUNT):
        feed.follow(nobody, f"t{n % 50}") if n % 2 else feed._command(("follow", nobody, f"t{n % 50}"))
        progress[0] = n + 1
        if n % 1000 == 0:
            eventlet.sleep(0)
    feed.stop()
    print(f"queued {progress[0]}", flush=True)
    if any("could not write the cache file" in message for message in warnings):
        print("last words logged", flush=True)


if __name__ == "__main__":
    main()
