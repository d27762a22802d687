"""The errors the service raises, in one tree, so each is handled once at the edge.

    ServiceError          a request the service cannot honour, in words a person can act on
    ├── NotFound          no such institution, finding, snapshot, revision or batch
    ├── Conflict          clashes with what is stored: published twice, edited finding, race
    ├── InvalidInput      the request's content is wrong (beyond what the request models check)
    │   └── TooLarge      a request or file over one of the limits (the message names it)
    └── NotConfigured     a setting this needs is missing (the city platform's address)

The scorer's own tree (`scoring.errors`: rules, input problems, unknown institution) sits
beside it: `scoring` never imports the service. Both are turned into RFC 9457 problems in one
place (`service.api.problems`) and into a message on stderr with exit status 1 in one place
(`service.cli.commands`). Domain code never knows about HTTP statuses or exit codes.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: the message is what the person asking is told."""


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class InvalidInput(ServiceError):
    pass


class TooLarge(InvalidInput):
    pass


class NotConfigured(ServiceError):
    pass
