"""Node identity with SPIFFE: SVID sources, a dev CA, and binding identity to chain and transport.

A stand-in SPIRE agent for tests (``DevAgent``) lives in
:mod:`swarmlib.testing.agent`; it is not the product and is not imported here.
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
