"""A stand-in SPIRE agent: the SPIFFE Workload API served from the dev CA on a unix socket.

SPIRE cannot be installed everywhere (not on a laptop without root, not in this
project's CI). This serves the same gRPC API a SPIRE agent serves, using the
Workload API stubs that py-spiffe ships, so that swarmlib's real client code
(py-spiffe's ``WorkloadApiClient`` / ``X509Source``) runs unchanged. It issues
SVIDs from a :class:`~swarmlib.identity.devca.DevCA` and can rotate them on
demand; attestation is not done (every caller gets the configured SVID). **For
development and tests only.**
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

# py-spiffe's generated Workload API stubs are private API: this is the one place that imports them.
from spiffe._proto import workload_pb2, workload_pb2_grpc

from swarmlib.identity.devca import DevCA

__all__ = ["DevAgent"]

logger = logging.getLogger(__name__)

_HEADER = ("workload.spiffe.io", "true")


class DevAgent:
    """Serve X.509-SVIDs for ``spiffe_id`` on ``socket_path`` until :meth:`stop`.

    Args:
        socket_path: Path of the unix socket to create.
        ca: The CA that issues the SVIDs (its certificate is the bundle).
        spiffe_id: The SPIFFE ID every caller receives.
        hours: Lifetime of each SVID. Defaults to 1 (SPIRE's default).
        federated: Other trust domains' CAs to hand out as federated bundles.
    """

    def __init__(
        self,
        socket_path: str | Path,
        ca: DevCA,
        spiffe_id: str,
        *,
        hours: float = 1.0,
        federated: dict[str, DevCA] | None = None,
    ):
        self.socket_path = Path(socket_path)
        self.ca = ca
        self.spiffe_id = spiffe_id
        self.hours = hours
        self.federated = federated or {}
        self._changed = threading.Condition()
        self._version = 0
        self._stopping = False
        self.cert, self.key = ca.issue(spiffe_id, hours=hours)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self), self._server
        )
        self._server.add_insecure_port(f"unix:{self.socket_path}")

    @property
    def endpoint(self) -> str:
        """The value for ``SPIFFE_ENDPOINT_SOCKET``."""
        return f"unix://{self.socket_path}"

    def start(self) -> DevAgent:
        """Start serving (in background threads)."""
        self._server.start()
        return self

    def rotate(self) -> None:
        """Issue a new SVID and push it to every open stream, as SPIRE does before expiry."""
        with self._changed:
            self.cert, self.key = self.ca.issue(self.spiffe_id, hours=self.hours)
            self._version += 1
            self._changed.notify_all()
        logger.info("rotated the SVID of %s", self.spiffe_id)

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._server.stop(grace=0).wait()
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> DevAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _response(self) -> Any:
        der = serialization.Encoding.DER
        bundle = self.ca.cert.public_bytes(der)
        svid = workload_pb2.X509SVID(
            spiffe_id=self.spiffe_id,
            x509_svid=self.cert.public_bytes(der),
            x509_svid_key=self.key.private_bytes(
                der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            bundle=bundle,
        )
        federated = {
            f"spiffe://{td}": ca.cert.public_bytes(der) for td, ca in self.federated.items()
        }
        return workload_pb2.X509SVIDResponse(svids=[svid], federated_bundles=federated)

    def _stream(self, context: grpc.ServicerContext) -> Iterator[Any]:
        if _HEADER not in tuple(context.invocation_metadata()):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")
        seen = -1
        while context.is_active():
            with self._changed:
                while self._version == seen and not self._stopping and context.is_active():
                    self._changed.wait(0.5)
                if self._stopping:
                    return
                seen = self._version
                response = self._response()
            yield response


class _Servicer(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    def __init__(self, agent: DevAgent):
        self.agent = agent

    def FetchX509SVID(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from self.agent._stream(context)
