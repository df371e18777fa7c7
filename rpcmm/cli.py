"""The ``rpcmm`` command: run a registry, register a host, look things up.

Exit status: 0 on success, 1 on an error (one line on stderr, no traceback), 2 on a usage
error. Each command is a small function; heavy imports happen inside it so ``rpcmm --help``
stays fast.
"""

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time

from rpcmm.errors import RegistryUnavailable, RpcmmError

__all__ = ["main"]

LOG = logging.getLogger("rpcmm")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, _log_level(args).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args) or 0
    except RegistryUnavailable as exc:
        print(f"rpcmm: error: {exc}; {_unreachable_hint(args)}", file=sys.stderr)
        return 1
    except RpcmmError as exc:
        print(f"rpcmm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _log_level(args):
    """The command's own ``--log-level``, else the one given before the command, else the
    command's default."""
    return args.log_level or args.global_log_level or args.default_log_level


def _parser():
    parser = argparse.ArgumentParser(
        prog="rpcmm",
        description="In-band matchmaker for brokerless RPC over ZeroMQ.",
    )
    parser.set_defaults(command=None, log_level=None, default_log_level="warning")
    parser.add_argument("--log-level", dest="global_log_level", default=None, choices=_LOG_LEVELS,
                        help="for every command (default: the command's own; its --log-level wins)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name, run, help, log_level="warning"):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=name, run=run, default_log_level=log_level)
        sub.add_argument("--log-level", default=None, choices=_LOG_LEVELS, help=f"default: {log_level}")
        return sub

    def seed_option(sub):
        sub.add_argument("--seed", required=True, metavar="FILE", help="the seed file (JSON ring + registries)")

    def timeout_option(sub):
        sub.add_argument("--timeout", type=_positive, default=0.5, metavar="S",
                         help="seconds to wait for each registry (default: 0.5)")

    def client_key_options(sub):
        sub.add_argument("--secret-key", metavar="FILE",
                         help="this client's secret certificate (NAME.key_secret): talk to registries over CURVE")
        sub.add_argument("--server-key", metavar="FILE",
                         help="the registries' public certificate (NAME.key); with --secret-key")

    sub = command("registry", _registry, "Serve a registry in the foreground until SIGINT, SIGTERM or SIGHUP.",
                  log_level="info")
    seed_option(sub)
    sub.add_argument("--endpoint", required=True, metavar="HOST:PORT",
                     help="which of the seed's registries this is (port 0: any free port, for tests)")
    sub.add_argument("--bind", metavar="ADDRESS",
                     help="address to bind instead of the endpoint's host (for example 0.0.0.0 or '*')")
    sub.add_argument("--sweep-interval", type=_positive, default=None, metavar="S",
                     help="seconds between expiry sweeps (default: 0.25)")
    sub.add_argument("--tick-interval", type=_positive, default=None, metavar="S",
                     help="seconds between two ticks of the live feed (default: 0.5)")
    sub.add_argument("--feed-port", type=_port, default=None, metavar="PORT",
                     help="TCP port of the live feed (default: any free port; clients ask for it)")
    sub.add_argument("--no-warmup", action="store_true",
                     help="do not load the table from the seed's other registries at start")
    sub.add_argument("--max-registrations", type=_positive_int, default=None, metavar="N",
                     help="(topic, host) pairs the registry holds at most; beyond it new hosts are "
                          "refused (default: 5000000; see doc/operations.rst for the memory it takes)")
    sub.add_argument("--secret-key", metavar="FILE",
                     help="this registry's secret certificate (NAME.key_secret): serve over CURVE")
    sub.add_argument("--authorized-keys", metavar="DIR",
                     help="directory of the client public keys (*.key) admitted; with --secret-key")
    sub.add_argument("--policy", metavar="FILE",
                     help="topic authorization policy (JSON; see doc/security.rst); needs keys")

    sub = command("register", _register,
                  "Register a host for topics and heartbeat until SIGINT, SIGTERM or SIGHUP, then unregister.")
    seed_option(sub)
    sub.add_argument("--host", required=True, metavar="NAME", help="the host name to register")
    sub.add_argument("--interval", type=_positive, default=None, metavar="S",
                     help="seconds between heartbeats (default: 1)")
    sub.add_argument("--ttl", type=_positive, default=None, metavar="S",
                     help="seconds the registries keep the host after its last heartbeat (default: 3)")
    timeout_option(sub)
    client_key_options(sub)
    sub.add_argument("topics", nargs="+", metavar="TOPIC")

    sub = command("lookup", _lookup, "Print the live hosts serving a topic.")
    seed_option(sub)
    timeout_option(sub)
    sub.add_argument("--json", action="store_true", help="print a JSON array of host names")
    client_key_options(sub)
    sub.add_argument("topic", metavar="TOPIC")

    sub = command("hosts", _hosts, "Print a registry's table of hosts.")
    seed_option(sub)
    timeout_option(sub)
    sub.add_argument("--json", action="store_true", help="print the table as JSON")
    client_key_options(sub)

    sub = command("status", _status, "Print every registry's state, size, epoch and peer sync.")
    seed_option(sub)
    timeout_option(sub)
    sub.add_argument("--json", action="store_true", help="print the status as JSON")
    client_key_options(sub)

    keys = commands.add_parser("keys", help="Manage CURVE key pairs.", description="Manage CURVE key pairs.")
    keys.set_defaults(command="keys", run=lambda args: keys.print_help(sys.stderr) or 2)
    key_commands = keys.add_subparsers(title="commands", metavar="COMMAND")
    sub = key_commands.add_parser("generate", help="Write DIR/NAME.key (public) and DIR/NAME.key_secret.",
                                  description="Write DIR/NAME.key (public) and DIR/NAME.key_secret (mode 0600).")
    sub.set_defaults(command="keys generate", run=_keys_generate)
    sub.add_argument("directory", metavar="DIR")
    sub.add_argument("name", metavar="NAME")

    sub = command("check-seed", _check_seed, "Validate a seed file and summarise it.")
    sub.add_argument("seed", metavar="FILE")

    sub = command("demo", _demo, "Run a local cluster from a seed file and show failures being handled.",
                  log_level="error")
    sub.add_argument("--seed", default=None, metavar="FILE",
                     help="a seed listing two registries on this machine (default: seeds/demo.json)")
    return parser


def _unreachable_hint(args):
    """What to check when no registry answers: a CURVE mismatch looks the same as an outage
    from the client's side (the registry refuses the handshake without a word)."""
    if getattr(args, "secret_key", None):
        return "are they running, and do they admit this key (--secret-key) and is --server-key theirs?"
    if _selects_redis(getattr(args, "seed", None)):
        return "is Redis running, and reachable from here?"
    return "are they running, and do they need CURVE keys (--secret-key, --server-key)?"


def _selects_redis(path):
    from rpcmm.seed import load_seed

    try:
        return path is not None and load_seed(path).redis is not None
    except RpcmmError:
        return False


def _registries_only(seed, command):
    """Raise a clear error if ``seed`` names no registries for a command that asks them."""
    from rpcmm.errors import ConfigurationError

    if not seed.registries:
        raise ConfigurationError(f"{seed.source} lists no registries under 'rpcmm-registry' ({_seed_kind(seed)}): "
                                 f"'rpcmm {command}' asks registries")


def _seed_kind(seed):
    """What a seed without registries is, for error messages."""
    return "it selects Redis" if seed.redis is not None else "it is a plain static ring"


def _warn(message):
    print(f"rpcmm: warning: {message}", file=sys.stderr, flush=True)


def _bind_address(text, port):
    """``--bind``: an address without a port (the endpoint's port is used)."""
    from rpcmm.addressing import Endpoint
    from rpcmm.errors import ConfigurationError

    bracketed = text.startswith("[") and text.endswith("]")
    host = text[1:-1] if bracketed else text
    if "]:" in text or (not bracketed and host.count(":") == 1):  # [::1]:7701, 10.0.0.1:7701
        raise ConfigurationError(f"--bind {text}: an address without a port (the endpoint's port, {port}, is used)")
    try:
        return Endpoint.parse(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    except ConfigurationError as exc:
        raise ConfigurationError(f"--bind {text}: {exc}") from None


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def _client_curve(args):
    """The loaded CURVE client config from --secret-key/--server-key, or None for neither."""
    from rpcmm.errors import ConfigurationError
    from rpcmm.security import CurveClientConfig

    if bool(args.secret_key) != bool(args.server_key):
        raise ConfigurationError("--secret-key and --server-key go together")
    return CurveClientConfig(args.secret_key, args.server_key).load() if args.secret_key else None


def _server_security(args):
    """``(curve, policy)`` from --secret-key/--authorized-keys/--policy (None for what is absent)."""
    from rpcmm.errors import ConfigurationError
    from rpcmm.policy import TopicPolicy
    from rpcmm.security import CurveServerConfig

    if bool(args.secret_key) != bool(args.authorized_keys):
        raise ConfigurationError("--secret-key and --authorized-keys go together")
    if args.policy and not args.secret_key:
        raise ConfigurationError("--policy needs --secret-key and --authorized-keys: without keys nobody is known")
    curve = CurveServerConfig(args.secret_key, args.authorized_keys).load() if args.secret_key else None
    policy = TopicPolicy.load(args.policy, authorized_keys_dir=args.authorized_keys) if args.policy else None
    return curve, policy


class _ShutdownSignals:
    """Catch SIGINT, SIGTERM and SIGHUP (a closed terminal) from the moment it is entered, so a
    signal that arrives while a command is still starting is not lost, and each ends the
    command cleanly; :meth:`wait` blocks until one has arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self._received = []
        self._done = threading.Event()
        # SIGHUP ignored from the start (nohup) stays ignored: the command must outlive its
        # terminal. SIGINT is caught even then: shells start background jobs ignoring it, and
        # ``kill -INT`` must still stop them.
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS
                          if sig != signal.SIGHUP or signal.getsignal(sig) is not signal.SIG_IGN}
        return self

    def _handle(self, signum, frame):
        self._received.append(signal.Signals(signum).name)
        self._done.set()

    def wait(self, alive=None):
        """Block until a signal and return the signal's name; or, if ``alive()`` (looked
        at every second) turns false first, return None."""
        while not self._done.wait(1.0 if alive else 3600):
            if alive is not None and not alive():
                return None
        return self._received[0]

    def __exit__(self, *exc_info):
        for sig, old in self._previous.items():
            signal.signal(sig, old)


# -- commands -----------------------------------------------------------------------------------


def _registry(args):
    from rpcmm.addressing import Endpoint
    from rpcmm.errors import ConfigurationError
    from rpcmm.seed import load_seed
    from rpcmm.server import RegistryServer

    seed = load_seed(args.seed)
    try:
        endpoint = Endpoint.parse(args.endpoint)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--endpoint {args.endpoint}: {exc}") from None
    if endpoint.port != 0 and endpoint not in seed.registries:
        listed = ", ".join(str(e) for e in seed.registries) or "none"
        raise ConfigurationError(f"{endpoint} is not one of the registries {args.seed} lists ({listed})")
    bind = _bind_address(args.bind, endpoint.port) if args.bind else endpoint
    kwargs = {"sweep_interval": args.sweep_interval} if args.sweep_interval else {}
    if args.feed_port is not None:
        kwargs["feed_port"] = args.feed_port
    if args.tick_interval:
        kwargs["tick_interval"] = args.tick_interval
    if args.max_registrations:
        kwargs["max_registrations"] = args.max_registrations
    # Every other registry in the seed is a peer to warm up from.
    peers = [] if args.no_warmup else [e for e in seed.registries if e != endpoint]
    kwargs["curve"], kwargs["policy"] = _server_security(args)
    with _ShutdownSignals() as signals:
        server = RegistryServer(bind, peers=peers, **kwargs)
        server.start()
        try:
            # One machine-readable line on stdout: supervisors and tests wait for it.
            print(f"rpcmm registry: serving on {server.endpoint}", flush=True)
            received = signals.wait(alive=lambda: server.running)
            if received is None:  # its log says why; a supervisor restarts it
                LOG.error("the registry's loop ended on its own; exiting")
                return 1
            LOG.info("%s received; stopping", received)
        finally:
            server.stop()
    return 0


def _register(args):
    from rpcmm.errors import ConfigurationError
    from rpcmm.factory import matchmaker_for_seed
    from rpcmm.seed import load_seed
    from rpcmm.timing import DEFAULT_INTERVAL, DEFAULT_TTL, HeartbeatTiming, TimingBounds

    seed = load_seed(args.seed)
    if not seed.registries and seed.redis is None:
        raise ConfigurationError(f"{args.seed} lists no registries under 'rpcmm-registry' ({_seed_kind(seed)}): "
                                 "there is nothing to register with")
    interval = args.interval or DEFAULT_INTERVAL
    ttl = args.ttl or max(DEFAULT_TTL, 3 * interval)
    timing = HeartbeatTiming(interval, ttl)
    if seed.registries:
        applied = TimingBounds().enforce(interval, ttl)
        if not all(math.isclose(a, b) for a, b in zip(applied, (interval, ttl))):
            _warn(f"registries with the default bounds apply interval {applied[0]:g}s and TTL {applied[1]:g}s, "
                  f"not {interval:g}s and {ttl:g}s (doc/operations.rst, Timing defaults)")
    matchmaker = matchmaker_for_seed(seed, timing=timing, lookup_timeout=args.timeout, live=False,
                                     curve=_client_curve(args))
    with _ShutdownSignals() as signals, matchmaker:
        for topic in args.topics:
            matchmaker.register(topic, args.host)
        with matchmaker.heartbeat():
            unconfirmed, reason = _unconfirmed(matchmaker, args.topics, args.host, _CONFIRM_WITHIN)
            if unconfirmed:
                _warn(f"after {_CONFIRM_WITHIN:g}s no registry lists {args.host} for {', '.join(unconfirmed)}"
                      f"{reason}; heartbeats go on. Causes: registries down or unreachable, CURVE keys they "
                      "refuse, a topic policy that does not grant it (see the registries' logs)")
            print(f"rpcmm register: {args.host} serves {', '.join(args.topics)}", flush=True)
            LOG.info("%s received; unregistering %s", signals.wait(), args.host)
    return 0


#: How long ``rpcmm register`` waits for the registries to list the host before it warns.
_CONFIRM_WITHIN = 2.0


def _unconfirmed(matchmaker, topics, host, within):
    """The topics lookups do not show ``host`` for after ``within`` seconds (and why, if a
    lookup failed): ``(topics, reason)``."""
    deadline, pending, reason = time.monotonic() + within, list(topics), ""
    while pending:
        try:
            pending = [t for t in pending if not matchmaker.confirmed(t, host)]
            reason = ""
        except RpcmmError as exc:
            reason = f" ({exc})"
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return pending, reason


def _lookup(args):
    from rpcmm.addressing import validate_name
    from rpcmm.factory import matchmaker_for_seed

    validate_name("topic", args.topic)
    with matchmaker_for_seed(args.seed, lookup_timeout=args.timeout, live=False,
                             curve=_client_curve(args)) as matchmaker:
        hosts = matchmaker.hosts(args.topic)
    if args.json:
        print(json.dumps(list(hosts)))
    else:
        for host in hosts:
            print(host)
    return 0


def _hosts(args):
    from rpcmm.backends.registry import RegistryMatchmaker
    from rpcmm.seed import load_seed

    seed = load_seed(args.seed)
    _registries_only(seed, "hosts")
    with RegistryMatchmaker(seed, lookup_timeout=args.timeout, live=False, curve=_client_curve(args)) as matchmaker:
        rows, endpoint = matchmaker.table()
    if args.json:
        print(json.dumps({
            "registry": str(endpoint),
            "hosts": [
                {"host": r.host, "topics": list(r.topics), "age": round(r.age, 3),
                 "interval": r.interval, "ttl": r.ttl}
                for r in rows
            ],
        }, indent=2))
        return 0
    print(f"registry {endpoint}: {len(rows)} host(s)")
    if rows:
        width = max(4, *(len(r.host) for r in rows))
        print(f"{'HOST':<{width}}  {'AGE(s)':>7}  TOPICS")
        for r in rows:
            print(f"{r.host:<{width}}  {r.age:>7.2f}  {' '.join(r.topics)}")
    return 0


def _status(args):
    from rpcmm.backends.registry import RegistryMatchmaker
    from rpcmm.seed import load_seed

    seed = load_seed(args.seed)
    _registries_only(seed, "status")
    with RegistryMatchmaker(seed, lookup_timeout=args.timeout, live=False, curve=_client_curve(args)) as matchmaker:
        answers = matchmaker.status()
    most = max((h.hosts for _, h in answers if h is not None), default=0)
    registries = []
    for endpoint, health in answers:
        if health is None:
            registries.append({"registry": str(endpoint), "state": "unreachable"})
            continue
        registries.append({
            "registry": str(endpoint),
            "state": health.state.name.lower(),
            "hosts": health.hosts,
            "registrations": health.registrations,
            "epoch": f"{health.epoch:x}",
            "seq": health.seq,
            "feed_port": health.feed_port,
            "data_age": round(health.data_age, 3),
            "synced_from": health.synced_from or None,
            "synced_age": None if health.synced_age < 0 else round(health.synced_age, 1),
            "behind": most - health.hosts,
            "max_registrations": health.max_registrations or None,
            "refused": health.refused,
        })
    if args.json:
        print(json.dumps({"registries": registries}, indent=2))
    else:
        print(f"{'REGISTRY':<22} {'STATE':<11} {'HOSTS':>6} {'BEHIND':>6} {'FULL':>5} {'REFUSED':>7} "
              f"{'EPOCH':>16} {'SEQ':>8}  PEER SYNC")
        for r in registries:
            if r["state"] == "unreachable":
                print(f"{r['registry']:<22} {'unreachable':<11}")
                continue
            sync = f"from {r['synced_from']} {r['synced_age']}s ago" if r["synced_from"] else "none"
            if r["state"] == "degraded":  # how old what it holds is (hosts it no longer hears)
                sync += f"; data {r['data_age']:g}s old"
            # How much of the table's cap is used: where "registry full" refusals start.
            full = f"{100 * r['registrations'] / r['max_registrations']:.0f}%" if r["max_registrations"] else "-"
            print(f"{r['registry']:<22} {r['state']:<11} {r['hosts']:>6} {r['behind']:>6} {full:>5} "
                  f"{r['refused']:>7} {r['epoch']:>16} {r['seq']:>8}  {sync}")
    if all(r["state"] == "unreachable" for r in registries):
        print(f"rpcmm: error: no registry answered within {args.timeout:g}s; {_unreachable_hint(args)}",
              file=sys.stderr)
        return 1
    return 0


def _keys_generate(args):
    from rpcmm.security import keys_generate_command

    print(keys_generate_command(args.directory, args.name))
    return 0


def _check_seed(args):
    from rpcmm.seed import load_seed

    seed = load_seed(args.seed)
    if seed.registries:
        backend = "registries: " + ", ".join(str(e) for e in seed.registries)
    elif seed.redis is not None:
        from rpcmm.backends.redis_location import parse_redis_url

        backend = f"Redis: {parse_redis_url(seed.redis)}"  # without its password
    else:
        backend = "no registries (a plain static ring)"
    print(f"{args.seed}: valid; {len(seed.ring)} static topic(s); {backend}")
    return 0


def _demo(args):
    from rpcmm.demo import run_demo

    return run_demo(args.seed)


if __name__ == "__main__":
    sys.exit(main())
