"""A heartbeat load generator for one registry: many hosts over few DEALER sockets.

It speaks the registry protocol directly (:mod:`rpcmm.protocol`), with every HEARTBEAT frame
encoded before the clock starts, so what is measured is the registry, not the generator. Host
``i`` is ``compute-NNNNNN.example.org`` and serves the 10 topics of its group of ten hosts
(``topic-NNNNNN``), so every topic has exactly 10 hosts, as in the Redis anchor's data set.

To know when the registry has *processed* what was sent, each socket sends a LOOKUP marker
after its share: a ROUTER handles one peer's messages in order, so the marker's answer means
everything before it on that socket was handled.

It runs in its own process (``python -m benchmarks.roles loadgen ENDPOINT SOCKETS``) and takes
one JSON command per line on stdin, answering one JSON line on stdout:

- ``{"op": "flood", "first", "count", "batch", "rounds", "interval", "ttl", "budget"}``: send
  ``rounds`` heartbeats of every host as fast as the registry takes them;
- ``{"op": "paced", ... "seconds"}``: one heartbeat of every host per ``interval``, spread
  evenly over it, for ``seconds``; reports how late the registry fell behind.
"""

import itertools
import json
import sys
import time

import zmq

from rpcmm import protocol

__all__ = ["host_name", "topic_name", "host_topics", "heartbeat_frames", "LoadGenerator", "Generator", "spawn", "main"]

HOSTS_PER_TOPIC = 10
TOPICS_PER_HOST = 10
_TIMEOUT_MS = 30_000


def host_name(i):
    return f"compute-{i:06d}.example.org"


def topic_name(j):
    return f"topic-{j:06d}"


def host_topics(i):
    """The 10 topics host ``i`` serves: those of its group of 10 hosts."""
    base = (i // HOSTS_PER_TOPIC) * TOPICS_PER_HOST
    return tuple(topic_name(base + k) for k in range(TOPICS_PER_HOST))


def heartbeat_frames(first, count, batch, interval, ttl):
    """Encoded HEARTBEAT frames for hosts ``first .. first+count-1``, ``batch`` hosts each."""
    states = [protocol.HostState(host_name(i), float(interval), float(ttl), host_topics(i))
              for i in range(first, first + count)]
    return [protocol.encode(protocol.Heartbeat(tuple(states[k:k + batch]))) for k in range(0, len(states), batch)]


class LoadGenerator:
    """``sockets`` DEALERs connected to one registry endpoint (``host:port``)."""

    def __init__(self, endpoint, sockets):
        self.context = zmq.Context()
        self.sockets = []
        for _ in range(sockets):
            s = self.context.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 10_000)
            s.setsockopt(zmq.SNDTIMEO, _TIMEOUT_MS)
            s.connect(f"tcp://{endpoint}")
            self.sockets.append(s)
        self._ids = itertools.count(1)

    def close(self):
        for s in self.sockets:
            s.close()
        self.context.term()

    def _markers(self):
        """Send a LOOKUP marker on every socket; return {socket: (request id, send time)}."""
        sent = {}
        for s in self.sockets:
            rid = next(self._ids)
            s.send(protocol.encode(protocol.Lookup(rid, topic_name(0))))
            sent[s] = (rid, time.perf_counter())
        return sent

    def _collect(self, pending, timeout):
        """Wait for marker answers; return the seconds each took (answer time - send time)."""
        lags = []
        poller = zmq.Poller()
        for s in pending:
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for s, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                reply = protocol.decode(s.recv())
                entry = pending.get(s)
                if entry is not None and reply.request_id == entry[0]:
                    lags.append(time.perf_counter() - entry[1])
                    del pending[s]
                    poller.unregister(s)
        if pending:
            raise TimeoutError(f"{len(pending)} marker(s) unanswered after {timeout:g}s")
        return lags

    def flood(self, frames, rounds, budget):
        """Send every frame ``rounds`` times, round-robin over the sockets, as fast as taken.

        Each round ends with markers whose answers are awaited before the next round, so the
        registry's backlog never exceeds one round and the time counts processed heartbeats.
        Returns the seconds from the first send to the last marker's answer, the rounds done.
        """
        deadline = time.monotonic() + budget
        socks = self.sockets
        n = len(socks)
        t0 = time.perf_counter()
        done = 0
        for _ in range(rounds):
            for k, frame in enumerate(frames):
                socks[k % n].send(frame, copy=False)
            self._collect(self._markers(), _TIMEOUT_MS / 1000)
            done += 1
            if time.monotonic() > deadline:
                break
        return {"seconds": time.perf_counter() - t0, "rounds": done, "frames": done * len(frames)}

    def paced(self, frames, interval, seconds):
        """One round of ``frames`` per ``interval``, each frame at its even share of the interval.

        After each round a marker on every socket measures how long the registry takes to
        reach the round's end (``lag``, timed when the answer arrives: the generator polls for
        answers while it waits to send). Below the interval, the registry keeps up.
        """
        socks = self.sockets
        n = len(socks)
        gap = interval / len(frames)
        rounds = max(1, int(round(seconds / interval)))
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        lags, pending, late_sends = [], {}, 0

        def drain(timeout_s):
            for s, _ in poller.poll(max(0.0, timeout_s) * 1000):
                while True:
                    try:
                        reply = protocol.decode(s.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    entry = pending.get(s)
                    if entry is not None and reply.request_id == entry[0]:
                        lags.append(time.perf_counter() - entry[1])
                        del pending[s]

        t_start = time.perf_counter()
        for r in range(rounds):
            round_start = t_start + r * interval
            for k, frame in enumerate(frames):
                due = round_start + k * gap
                wait = due - time.perf_counter()
                while wait > 0:
                    drain(wait)
                    wait = due - time.perf_counter()
                if wait < -gap:
                    late_sends += 1
                socks[k % n].send(frame, copy=False)
            if pending:  # last round's markers still unanswered a whole round later
                lags += self._collect(pending, _TIMEOUT_MS / 1000)
            pending = self._markers()
        lags += self._collect(pending, _TIMEOUT_MS / 1000)
        wall = time.perf_counter() - t_start
        return {"rounds": rounds, "wall_seconds": wall, "marker_lag_max_s": max(lags),
                "marker_lag_median_s": sorted(lags)[len(lags) // 2], "late_sends": late_sends}


def main(endpoint, sockets):
    """The child-process loop: one JSON command per stdin line, one JSON answer per line."""
    gen = LoadGenerator(endpoint, int(sockets))
    print("READY", flush=True)
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            t = time.perf_counter()
            frames = heartbeat_frames(cmd["first"], cmd["count"], cmd["batch"], cmd["interval"], cmd["ttl"])
            encode_s = time.perf_counter() - t
            if cmd["op"] == "flood":
                result = gen.flood(frames, cmd["rounds"], cmd["budget"])
            elif cmd["op"] == "paced":
                result = gen.paced(frames, cmd["interval"], cmd["seconds"])
            else:
                result = {"error": f"unknown op {cmd['op']!r}"}
            result.update(encode_s=encode_s, frame_bytes=sum(map(len, frames)) // max(1, len(frames)),
                          frames_per_round=len(frames))
            print(json.dumps(result), flush=True)
    finally:
        gen.close()


# -- the parent's side ------------------------------------------------------------------------


class Generator:
    """The parent's handle on a ``loadgen`` child process (see :mod:`benchmarks.loadgen`)."""

    def __init__(self, server):
        self.server = server

    def command(self, **cmd):
        p = self.server.popen
        p.stdin.write(json.dumps(cmd) + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited (rc={p.poll()}); see the {self.server.name} log")
        result = json.loads(line)
        if "error" in result:
            raise RuntimeError(result["error"])
        return result

    def stop(self):
        try:
            self.server.popen.stdin.write('{"op": "quit"}\n')
            self.server.popen.stdin.flush()
        except (OSError, ValueError):  # already stopped
            pass
        self.server.stop()


def spawn(endpoint, sockets, name="loadgen"):
    """Start a load generator child process for the registry at ``endpoint``."""
    from benchmarks import servers
    return Generator(servers.start_role("loadgen", endpoint, sockets, name=name, stdin=True))
