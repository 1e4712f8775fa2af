"""Exception hierarchy of the harness.

``HarnessInfrastructureError`` and its subclasses mean the harness itself could not run (a tool
is missing, a server did not start); the CLI maps them to exit code 3. They never mean that the
system under test misbehaved.
"""


class HarnessInfrastructureError(Exception):
    """The harness could not set up or reach what it needs to run."""


class ToxiproxyNotFoundError(HarnessInfrastructureError):
    """No Toxiproxy server binary could be found; the message says how to install one."""


class ToxiproxyStartError(HarnessInfrastructureError):
    """A Toxiproxy server was found but did not start or did not answer in time."""
