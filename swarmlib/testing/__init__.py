"""Test tooling that ships with swarmlib but is not the product.

* :mod:`swarmlib.testing.local` runs the bare sharded exchange in several real
  processes on 127.0.0.1 (and can SIGKILL one of them), for benchmarks, demos
  and fault tests.
* :mod:`swarmlib.testing.agent` is a stand-in SPIRE agent: it serves the SPIFFE
  Workload API on a unix socket with py-spiffe's gRPC stubs, so that the real
  Workload API client can be tested where no SPIRE agent can be installed. It
  imports py-spiffe's private ``_proto`` modules and needs grpc.

Neither is imported by ``import swarmlib``; a deployment never uses them.
"""
