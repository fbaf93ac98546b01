"""DICOM receiving spread over worker processes.

Decoding PDUs and parsing headers is CPU work that Python runs one thread at
a time, so associations are served by worker processes: the server process
accepts each connection on the DICOM port and hands its socket (SCM_RIGHTS
over a pipe) to the next worker in turn, so that several associations use
several cores evenly (the kernel's SO_REUSEPORT hashing often gave three of
four associations to one worker). Each worker writes files to the store itself and reaches the index
through :class:`~pacsdash.archive.remote.RemoteIndex`; the server process
keeps the only index connection and its single writer.

With ``[server] dicom_tls_port`` the server process also accepts on that
port and hands those connections over the same way; the worker that takes
one does its TLS handshake (:mod:`pacsdash.dimse.secure`), so that the
server process does no cryptography.

A worker stops when the server process closes its pipe, including when the
server is killed: its pending C-STOREs then fail, unacknowledged.

When the server keeps a traffic record (:mod:`pacsdash.traffic`), each
worker gets a third pipe, one way, on which its
:class:`~pacsdash.traffic.channel.TrafficForwarder` sends batches of
events; the DICOM data never waits for them.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import socket
import threading
from multiprocessing import reduction
from dataclasses import replace
from multiprocessing.connection import Connection  # noqa: F401 - worker_main's argument
from typing import Any

from pacsdash.config import Settings

LOGGER = logging.getLogger(__name__)
READY_TIMEOUT = 60


def worker_main(settings: Settings, connection: Connection, handoff: Connection, port: int, number: int,
                ready: Any, traffic: Connection | None = None, tls_port: int = 0) -> None:
    """Entry point of one worker process; ``traffic``: where to send its traffic events, if anywhere;
    ``tls_port``: the DICOM over TLS port the server process listens on (0: none)."""
    import signal

    # Ctrl-C reaches the whole process group: the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pacsdash.access import open_accounts
    from pacsdash.archive.factory import worker_archive
    from pacsdash.archive.remote import RemoteIndex
    from pacsdash.dimse import compat
    from pacsdash.dimse.scp import DicomNode
    from pacsdash.logs import configure_logging
    from pacsdash.traffic.channel import TrafficForwarder

    configure_logging(settings.log_path, f"dicom-worker-{number}")
    compat.install(plain=settings.server.plain_pynetdicom)  # a spawned process starts with pynetdicom as released
    index = RemoteIndex(connection)
    archive = worker_archive(settings, index)
    forwarder = TrafficForwarder(traffic).start() if traffic is not None else None
    node = DicomNode(archive, open_accounts(settings),
                     replace(settings.server, dicom_port=port, dicom_tls_port=tls_port), handoff=handoff,
                     traffic=forwarder, traffic_prefix=f"w{number}-{os.getpid()}")
    node.start()
    ready.set()
    index.gone.wait()
    node.stop()
    if forwarder is not None:
        forwarder.stop()
    archive.close()
    index.close()


class DicomWorkers:
    """Worker processes serving the DICOM port for one server process."""

    def __init__(self, settings: Settings, archive: Any, count: int, traffic: Any = None) -> None:
        self.settings = settings
        self.archive = archive
        self.count = count
        #: The server's :class:`~pacsdash.traffic.recorder.TrafficRecorder`, or None (nothing recorded).
        self.traffic = traffic
        self._receivers: list[Any] = []
        self.port = 0
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[Any] = []
        self._services: list[Any] = []
        self._listener: socket.socket | None = None
        #: The DICOM over TLS port (``dicom_tls_port``), or 0 for none.
        self.tls_port = 0
        self._tls_listener: socket.socket | None = None
        self._turn = itertools.count()
        #: One hand-off at a time: two ports are accepted on, by two threads.
        self._handoff_lock = threading.Lock()
        self._handoffs: list[tuple[Any, Connection]] = []
        #: Spawned workers not yet served the index: (number, pipe, ready event, process).
        self._unserved: list[tuple[int, Connection, Any, Any]] = []
        #: Each spawned worker and the event it sets once it listens.
        self._readiness: list[tuple[Any, Any]] = []
        self._accepting = threading.Event()
        self._listening = threading.Event()
        self._watch = threading.Event()

    def listen(self) -> int:
        """Take the DICOM port (and the DICOM over TLS port) now: peers'
        connections wait in its backlog until the workers serve them (a
        scanner calling while the server starts is answered late, not
        refused). Returns the port."""
        if self._listener is None:
            server = self.settings.server
            self._listener = _listening_socket(server.host, server.dicom_port)
            self.port = self._listener.getsockname()[1]
            if server.dicom_tls_port:
                self._tls_listener = _listening_socket(server.host, server.dicom_tls_port)
                self.tls_port = self._tls_listener.getsockname()[1]
        return self.port

    def spawn(self) -> None:
        """Start the worker processes: they import and set up while the server
        opens its archive; :meth:`start` then serves them the index."""
        if self._processes or self._unserved:
            return
        self.listen()
        for number in range(self.count):
            parent, child = self._context.Pipe(duplex=True)
            handoff_parent, handoff_child = self._context.Pipe(duplex=True)  # a Unix socket: can carry fds
            ready = self._context.Event()
            traffic_parent, traffic_child = self._context.Pipe(duplex=False) if self.traffic is not None else (None, None)
            process = self._context.Process(
                target=worker_main,
                args=(self.settings, child, handoff_child, self.port, number, ready, traffic_child, self.tls_port),
                name=f"pacsdash-dicom-worker-{number}",
                daemon=True,
            )
            process.start()
            child.close()
            handoff_child.close()
            if traffic_parent is not None:
                from pacsdash.traffic.channel import TrafficReceiver

                traffic_child.close()
                self._receivers.append(TrafficReceiver(traffic_parent, self.traffic, f"worker{number}").start())
            self._handoffs.append((process, handoff_parent))
            self._processes.append(process)
            self._unserved.append((number, parent, ready, process))
            self._readiness.append((process, ready))

    def accept_when_ready(self) -> None:
        """Hand connections to the workers as soon as they listen, before the
        archive is open (after a crash it may take a while to recover): a
        C-ECHO is answered at once, and what needs the index (a C-STORE's
        acknowledgement, a C-FIND) waits on the worker's pipe until
        :meth:`start` serves it."""
        self.spawn()
        if self._accepting.is_set():
            return
        self._accepting.set()
        threading.Thread(target=self._accept_once_ready, name="pacsdash-dicom-ready", daemon=True).start()

    def _accept_once_ready(self) -> None:
        for process, ready in list(self._readiness):
            if not ready.wait(READY_TIMEOUT):
                LOGGER.error("%s did not start listening within %ds", process.name, READY_TIMEOUT)
                return
        host = self.settings.server.host
        threading.Thread(target=self._accept, args=(self._listener,), name="pacsdash-dicom-accept", daemon=True).start()
        if self._tls_listener is not None:
            threading.Thread(target=self._accept, args=(self._tls_listener,), name="pacsdash-dicom-tls-accept",
                             daemon=True).start()
            LOGGER.info("DICOM over TLS on %s:%d, handed to the same workers", host, self.tls_port)
        LOGGER.info("%d DICOM worker processes listening on %s:%d", self.count, host, self.port)
        self._listening.set()

    def start(self) -> int:
        """Start the workers (if :meth:`spawn` did not), serve them the
        archive's index and hand them connections; return the DICOM port once
        all are listening."""
        from pacsdash.archive.remote import IndexService

        self.spawn()
        for number, parent, ready, process in self._unserved:
            service = IndexService(self.archive, parent, f"worker{number}")
            service.start()
            self._services.append(service)
        self._unserved.clear()
        self.accept_when_ready()
        if not self._listening.wait(READY_TIMEOUT + 5):
            names = ", ".join(p.name for p, ready in self._readiness if not ready.is_set())
            self.stop()
            raise RuntimeError(f"{names or 'a DICOM worker'} did not start listening within {READY_TIMEOUT}s")
        threading.Thread(target=self._supervise, name="pacsdash-worker-watch", daemon=True).start()
        return self.port

    def _accept(self, listener: socket.socket) -> None:
        """Accept connections on ``listener`` and hand each to the next live worker."""
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: stopping
            with conn, self._handoff_lock:
                for _ in range(len(self._handoffs)):
                    process, pipe = self._handoffs[next(self._turn) % len(self._handoffs)]
                    if process.exitcode is not None:
                        continue
                    try:
                        reduction.send_handle(pipe, conn.fileno(), process.pid)
                        break
                    except OSError:
                        continue
                else:
                    LOGGER.error("no DICOM worker to take a connection; closing it")

    def _supervise(self) -> None:
        """Log a worker that dies; its unacknowledged files need a reconcile."""
        while not self._watch.wait(1.0):
            for process in self._processes:
                if process.exitcode is not None and not self._watch.is_set():
                    LOGGER.error("%s exited with %s; the archive will be checked at the next start",
                                 process.name, process.exitcode)
                    self.archive.dirty = True
                    self._processes.remove(process)
                    break

    def stop(self, timeout: float = 15) -> None:
        """Ask the workers to stop and wait for them."""
        self._watch.set()
        for _, parent, _, _ in self._unserved:  # spawned, never served: their index is gone
            parent.close()
        self._unserved.clear()
        for service in self._services:
            service.stop()
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(5)
        for service in self._services:
            service.join(5)
        for receiver in self._receivers:
            receiver.join(2)  # ends when its worker's pipe closes
        self._receivers.clear()
        self._processes.clear()
        self._services.clear()
        for listener in (self._listener, self._tls_listener):
            if listener is not None:
                listener.close()
        self._listener = self._tls_listener = None
        for _, pipe in self._handoffs:
            pipe.close()
        self._handoffs.clear()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener
