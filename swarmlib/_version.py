"""The version of swarmlib (read by setup.cfg, the CLI and the contract check)."""

__version__ = "0.1.0"
