"""Whether a community payee's community may receive payouts now (DESIGN §10: a suspended
community "cannot receive spends or payouts"). The payee's own status is billing's; the
community's is CommDesk's, in its MongoDB, read through the process's `CommunityDirectory`.

It is asked twice: before a settlement is made (`service`: a community that may not be paid
makes the payee wait, nothing is posted) and before each transfer attempt is sent
(`transfers`: a community suspended after its settlement was made is not paid). A partner
payee has no community: nothing is asked for it.

The answer is a reason or None, never an exception: a run reports it as the payee's
`waiting`, a transfer decides from it whether to send, wait or fail.
"""

from __future__ import annotations

import structlog

from commdesk_billing.errors import (
    CommunityDirectoryUnavailable,
    CommunityNotFound,
    CommunityRecordInvalid,
    CommunitySuspended,
    InvalidCommunityId,
)
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.settlements.auth import community_of

log = structlog.get_logger(__name__)

SUSPENDED = "community_suspended"
NOT_FOUND = "community_not_found"  # no such community in CommDesk (or an id none can have)
RECORD_INVALID = "community_record_invalid"  # CommDesk's record cannot be used for money
# MongoDB did not answer: not a "no", only "not now". Never fails a settlement.
UNAVAILABLE = "community_directory_unavailable"


async def hold(directory: CommunityDirectory, payable_code: str) -> str | None:
    """Why the payee whose payable account is `payable_code` may not be paid now as far as
    its community goes (one of the codes above), or None: it is no community's, or its
    community is active."""
    community_id = community_of(payable_code)
    if community_id is None:
        return None
    try:
        await directory.require_active(community_id)
    except CommunityDirectoryUnavailable:
        reason = UNAVAILABLE
    except CommunitySuspended:
        reason = SUSPENDED
    except (CommunityNotFound, InvalidCommunityId):
        reason = NOT_FOUND
    except CommunityRecordInvalid:
        reason = RECORD_INVALID
    else:
        return None
    log.warning("settlement.community.held", community_id=community_id, reason=reason)
    return reason
