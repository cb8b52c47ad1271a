"""Node identity with SPIFFE: SVID sources, a dev CA, and binding identity to chain and transport.

``DevAgent`` (a stand-in SPIRE agent) lives in :mod:`swarmlib.identity.agent`
and needs grpc; it is not imported here.
"""

from swarmlib.identity.binding import (
    Binding,
    Credentials,
    Expected,
    make_credentials,
    svid_hash,
    verify_credentials,
)
from swarmlib.identity.devca import DevCA, IssuedSvid
from swarmlib.identity.source import FileSource, IdentitySource, WorkloadSource, open_source

__all__ = [
    "Binding",
    "Credentials",
    "DevCA",
    "Expected",
    "FileSource",
    "IdentitySource",
    "IssuedSvid",
    "WorkloadSource",
    "make_credentials",
    "open_source",
    "svid_hash",
    "verify_credentials",
]
