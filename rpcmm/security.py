"""CurveZMQ for rpcmm: key files, secured sockets, and the ZAP handler that admits known keys.

Keys live in ZeroMQ's certificate format (what ``zmq.auth.create_certificates`` writes and
czmq reads): ``NAME.key`` holds a public key, ``NAME.key_secret`` the public and the secret
key. There is no certificate authority: a registry trusts exactly the public keys in one
directory (its *authorized keys*), and a client trusts exactly one registry public key.

Keys are handled as their 40-character Z85 text in ``bytes`` (what the certificate files
hold and what zmq's ``CURVE_*KEY`` options take). :func:`peer_key` gives the Z85 as ``str``.

Typical registry side::

    server_config = CurveServerConfig("registry.key_secret", "authorized/").load()
    auth = CurveAuthenticator(context, server_config.authorized_keys).start()
    router = context.socket(zmq.ROUTER)
    secure_server_socket(router, server_config)   # before bind
    router.bind(...)
    ...
    router.close(); auth.stop(); context.term()

Typical client side::

    client_config = CurveClientConfig("client.key_secret", "registry.key").load()
    dealer = context.socket(zmq.DEALER)
    secure_client_socket(dealer, client_config)   # before connect
    dealer.connect(...)

Every problem with a key file or directory raises
:class:`~rpcmm.errors.ConfigurationError` naming the file and the reason.
"""

import dataclasses
import logging
import os
import pathlib
import re

import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.utils import z85

from rpcmm.errors import ConfigurationError, LifecycleError
from rpcmm.logutil import RateLimitedLogger
from rpcmm.runtime import default_runtime, send_wake_token

__all__ = [
    "ZAP_ENDPOINT",
    "DEFAULT_ZAP_DOMAIN",
    "generate_keypair",
    "keys_generate_command",
    "load_secret_keypair",
    "load_public_key",
    "load_authorized_keys",
    "CurveServerConfig",
    "CurveClientConfig",
    "LoadedCurveServerConfig",
    "LoadedCurveClientConfig",
    "secure_server_socket",
    "secure_client_socket",
    "CurveAuthenticator",
    "peer_key",
]

LOG = logging.getLogger(__name__)

#: Where libzmq sends authentication requests (RFC 27); one handler per zmq context.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: The ZAP domain rpcmm's secured sockets declare; the authenticator guards this domain.
DEFAULT_ZAP_DOMAIN = "rpcmm"

_PUBLIC_SUFFIX = ".key"
_SECRET_SUFFIX = ".key_secret"
_Z85_KEY_LENGTH = 40  # a 32-byte Curve25519 key in Z85
_JOIN_TIMEOUT = 5.0


# -- key files ----------------------------------------------------------------------------------


_KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


def generate_keypair(directory, name):
    """Write a new key pair as ``DIRECTORY/NAME.key`` (public) and ``NAME.key_secret``.

    Creates ``directory`` (mode 0700) if needed. The secret file is created 0600 before a
    byte of key is written, and neither file may exist already: rpcmm never overwrites a key
    (an overwritten secret key locks its owner out of every registry that trusted it).
    Returns ``(public_path, secret_path)`` as strings.
    """
    # Names end up in policy files, file names and log lines: letters, digits, '.', '-', '_'.
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigurationError(f"key name {name!r}: use letters, digits, '.', '-' and '_' (say compute-17)")
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{directory}: not a directory (keys are written into one)")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"{directory}: cannot create the key directory: {exc.strerror}") from None
    public_path = directory / f"{name}{_PUBLIC_SUFFIX}"
    secret_path = directory / f"{name}{_SECRET_SUFFIX}"
    # Claim both names with O_EXCL first: refusing to overwrite is then race-free, and the
    # secret file has mode 0600 from its creation (create_certificates reopens it with "w",
    # which truncates but keeps the mode). No umask juggling: umask is process-wide.
    created = []
    try:
        for path, mode in ((secret_path, 0o600), (public_path, 0o644)):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                raise ConfigurationError(f"{path}: already exists; rpcmm does not overwrite keys") from None
            except OSError as exc:
                raise ConfigurationError(f"{path}: cannot create: {exc.strerror}") from None
            os.close(fd)
            created.append(path)
        os.chmod(secret_path, 0o600)  # in case the umask took bits away from 0600 (it cannot add)
        written = zmq.auth.create_certificates(str(directory), name)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return tuple(str(p) for p in written)


def keys_generate_command(directory, name):
    """``rpcmm keys generate DIR NAME``: make a key pair; return the line to print."""
    public_path, secret_path = generate_keypair(directory, name)
    public = load_public_key(public_path).decode("ascii")
    return (f"rpcmm keys: wrote {public_path} (public: give it to the other side) and "
            f"{secret_path} (secret: keep it here); public key {public}")


def _read_certificate(path):
    """(public, secret or None) from a certificate file, as Z85 bytes; ConfigurationError if not one."""
    path = pathlib.Path(path)
    if not path.is_file():
        why = "no such file" if not path.exists() else "not a regular file"
        raise ConfigurationError(f"{path}: {why}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(f"{path}: not a ZeroMQ certificate (no public-key line)") from None
    _check_z85(path, public, "public-key")
    if secret is not None:
        _check_z85(path, secret, "secret-key")
    return public, secret


def _check_z85(path, key, what):
    if len(key) != _Z85_KEY_LENGTH:
        raise ConfigurationError(f"{path}: {what} is {len(key)} characters, a Z85 key has {_Z85_KEY_LENGTH}")
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError, TypeError):
        raise ConfigurationError(f"{path}: {what} is not valid Z85") from None


def load_secret_keypair(path):
    """``(public, secret)`` Z85 keys from a ``.key_secret`` certificate file."""
    public, secret = _read_certificate(path)
    if secret is None:
        raise ConfigurationError(f"{path}: has no secret-key (a public certificate where a secret one is needed)")
    if zmq.curve_public(secret) != public:
        raise ConfigurationError(f"{path}: its public-key does not belong to its secret-key")
    return public, secret


def load_public_key(path):
    """The Z85 public key of a ``.key`` certificate file.

    A file that also holds a secret key is refused: it must not be handed around, and
    accepting it here would invite copying secret files into authorized-key directories.
    """
    public, secret = _read_certificate(path)
    if secret is not None:
        raise ConfigurationError(f"{path}: holds a secret-key; use the public .key file instead")
    return public


def load_authorized_keys(directory):
    """Every public key in ``DIRECTORY/*.key``, as a frozenset of Z85 bytes.

    Other files (``*.key_secret``, READMEs) are ignored; an empty set is an error, since a
    registry that admits nobody is certainly misconfigured.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        why = "no such directory" if not directory.exists() else "not a directory"
        raise ConfigurationError(f"{directory}: {why} (expected a directory of authorized .key files)")
    keys = frozenset(load_public_key(path) for path in sorted(directory.glob(f"*{_PUBLIC_SUFFIX}")))
    if not keys:
        raise ConfigurationError(f"{directory}: holds no *{_PUBLIC_SUFFIX} public key files; nobody could connect")
    secrets = sorted(path.name for path in directory.glob(f"*{_SECRET_SUFFIX}"))
    if secrets:
        shown = ", ".join(secrets[:5]) + (", ..." if len(secrets) > 5 else "")
        LOG.warning("%s holds secret keys (%s): they are ignored, but a secret key belongs only on the host it "
                    "identifies; move them out", directory, shown)
    return keys


# -- configurations -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadedCurveServerConfig:
    """A registry's (or listener's) keys, loaded: its key pair and the client keys it admits."""

    public_key: bytes
    secret_key: bytes
    authorized_keys: frozenset


@dataclasses.dataclass(frozen=True)
class LoadedCurveClientConfig:
    """A client's key pair and the public key of the server it will talk to, loaded."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


@dataclasses.dataclass(frozen=True)
class CurveServerConfig:
    """Where a server's keys are: its secret certificate and a directory of admitted public keys.

    Constructing one reads nothing; :meth:`load` reads and validates the files.
    """

    secret_key_file: str
    authorized_keys_dir: str

    def load(self):
        public, secret = load_secret_keypair(self.secret_key_file)
        return LoadedCurveServerConfig(public, secret, load_authorized_keys(self.authorized_keys_dir))


@dataclasses.dataclass(frozen=True)
class CurveClientConfig:
    """Where a client's keys are: its secret certificate and the server's public certificate."""

    secret_key_file: str
    server_key_file: str

    def load(self):
        public, secret = load_secret_keypair(self.secret_key_file)
        return LoadedCurveClientConfig(public, secret, load_public_key(self.server_key_file))


# -- sockets ------------------------------------------------------------------------------------


def secure_server_socket(socket, config, zap_domain=DEFAULT_ZAP_DOMAIN):
    """Make ``socket`` a CURVE server with ``config``'s keys; call before ``bind``.

    Peers then need CURVE and this server's public key to complete a handshake, and the ZAP
    handler of the socket's context (:class:`CurveAuthenticator`) decides which client keys
    get in. Without a running handler libzmq refuses every CURVE peer (ZMQ_ZAP_ENFORCE_DOMAIN
    is set, so a missing handler fails closed rather than admitting everyone).
    """
    socket.setsockopt(zmq.ZAP_DOMAIN, zap_domain.encode("ascii"))
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, config.public_key)
    socket.setsockopt(zmq.CURVE_SECRETKEY, config.secret_key)
    return socket


def secure_client_socket(socket, config):
    """Make ``socket`` a CURVE client of the server whose public key ``config`` holds; call before ``connect``.

    The handshake fails (and zmq keeps retrying in the background) unless the server has the
    matching secret key, so a client cannot be talked to by an impostor registry.
    """
    socket.setsockopt(zmq.CURVE_SERVERKEY, config.server_key)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, config.public_key)
    socket.setsockopt(zmq.CURVE_SECRETKEY, config.secret_key)
    return socket


def peer_key(frame):
    """The Z85 public key (``str``) of the authenticated peer that sent ``frame``, else None.

    ``frame`` is a ``zmq.Frame`` (receive with ``copy=False``). The key is the ZAP User-Id
    that :class:`CurveAuthenticator` sets; messages from NULL (unsecured) connections have
    none.
    """
    try:
        user_id = frame.get("User-Id")
    except (zmq.ZMQError, AttributeError, TypeError):
        return None
    return user_id or None


# -- the ZAP handler ----------------------------------------------------------------------------


class CurveAuthenticator(Authenticator):
    """Answers libzmq's authentication requests for one context: CURVE keys in a set get in.

    Only peers presenting a key in ``authorized_keys`` (Z85 bytes) complete a handshake with
    a socket of domain ``zap_domain``; NULL and PLAIN peers of that domain are refused too.
    Requests for other domains are left to zmq's classic rule (NULL passes, nothing else
    does), so unsecured sockets sharing the context keep working. A successful peer's
    User-Id is its Z85 public key (:func:`peer_key` reads it back).

    ZAP is per context: libzmq has exactly one ``inproc://zeromq.zap.01`` per context, so run
    at most one authenticator per context (a second :meth:`start` raises
    ConfigurationError), and give it the union of the keys every secured socket of the
    context admits.

    Lifecycle: the constructor does no I/O; :meth:`start` binds the ZAP endpoint and serves
    it in a task from ``runtime.spawn`` (plain threads or eventlet); :meth:`stop` wakes the
    task, which closes the socket, and joins it. Stop it before terming the context.
    """

    def __init__(self, context, authorized_keys, runtime=None, zap_domain=DEFAULT_ZAP_DOMAIN):
        super().__init__(context, log=LOG)
        self.runtime = runtime if runtime is not None else default_runtime()
        self.authorized_keys = frozenset(authorized_keys)
        self.zap_domain = zap_domain
        self.allowed = 0  # counters, readable from any thread
        self.denied = 0
        self._denials = RateLimitedLogger(LOG)
        self._current_address = ""
        self._token = os.urandom(16)
        self._wake_address = f"inproc://rpcmm-zap-wake-{self._token.hex()}"
        self._task = None
        # The base class decides CURVE requests through this provider's callback().
        self.configure_curve_callback(zap_domain, self)

    @property
    def running(self):
        return self._task is not None and self._task.is_alive()

    def start(self):
        """Bind the ZAP endpoint and start answering; returns self."""
        if self._task is not None:
            raise LifecycleError("a CurveAuthenticator starts once")
        zmq_module = self.runtime.zmq
        # A REP from the runtime's binding (green under eventlet), not the base class's plain
        # zmq.Socket, which would block eventlet's hub.
        socket = self.context.socket(zmq_module.REP)
        socket.setsockopt(zmq_module.LINGER, 0)
        try:
            socket.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            socket.close()
            raise ConfigurationError(
                f"cannot serve {ZAP_ENDPOINT} on this zmq context ({exc.strerror}): "
                "one authenticator per context, and one is already running") from None
        # The stop token arrives on the same socket, through a second endpoint: a blocking
        # recv is then the only wait, which is green under eventlet (zmq.Poller is not).
        socket.bind(self._wake_address)
        self.zap_socket = socket
        self._task = self.runtime.spawn(self._serve, name="rpcmm-zap")
        return self

    def stop(self, timeout=_JOIN_TIMEOUT):
        """Stop answering and close the ZAP socket; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        if task.is_alive():
            zmq_module = self.runtime.zmq
            send_wake_token(self.context, zmq_module, zmq_module.REQ, self._wake_address, self._token)
            task.join(timeout)
            if task.is_alive():
                LOG.error("ZAP handler did not stop within %gs", timeout)

    def _serve(self):
        socket = self.zap_socket
        try:
            while True:
                try:
                    request = socket.recv_multipart()
                except Exception:
                    LOG.exception("ZAP handler: receive failed; it stops and CURVE peers are refused")
                    return
                if request == [self._token]:
                    return
                try:
                    self._answer(request)
                except Exception:
                    # A REP that does not answer is stuck, and so is every handshake after.
                    LOG.exception("ZAP handler: could not answer a request")
                    return
        finally:
            # Unbinding is synchronous, closing is not: without it the endpoint stays taken for
            # a moment after stop() returns, and a new authenticator on this context could fail.
            try:
                socket.unbind(ZAP_ENDPOINT)
            except Exception:
                LOG.debug("unbinding the ZAP endpoint failed", exc_info=True)
            socket.close()
            self.zap_socket = None

    def _answer(self, request):
        if len(request) >= 6:
            domain = request[2].decode("utf-8", "replace")
            self._current_address = request[3].decode("utf-8", "replace")
            mechanism = request[5]
            if domain == self.zap_domain and mechanism != b"CURVE":
                self._deny(request[1], f"mechanism {mechanism.decode('ascii', 'replace')}", "not CURVE")
                return
            if domain != self.zap_domain and mechanism != b"NULL":
                self._deny(request[1], f"mechanism {mechanism.decode('ascii', 'replace')}",
                           f"domain {domain!r} is not rpcmm's")
                return
        # handle_zap_message is a coroutine only so that callbacks may be async; ours is not,
        # so it runs to completion on the first step, without an event loop.
        step = self.handle_zap_message(request)
        try:
            step.send(None)
        except StopIteration:
            return
        step.close()
        raise RuntimeError("ZAP handling unexpectedly waited")

    def _deny(self, request_id, what, why):
        self.denied += 1
        self._denials.log("refused a connection from %s, %s: %s", self._current_address, what, why)
        self._send_zap_reply(request_id, b"400", why.encode("ascii", "replace"))

    def callback(self, domain, z85_key):
        """The base class's credentials hook (only asked about our domain): may ``z85_key`` connect?"""
        if z85_key in self.authorized_keys:
            self.allowed += 1
            return True
        self.denied += 1
        self._denials.log("refused a connection from %s, %s: unknown key", self._current_address,
                          f"key {z85_key.decode('ascii', 'replace')}")
        return False
