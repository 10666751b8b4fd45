"""The API's community directory, for routes: `communities: Communities`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from commdesk_billing.modules.communities.directory import CommunityDirectory


def community_directory(request: Request) -> CommunityDirectory:
    """The one the API made in its lifespan (`app.state.communities`)."""
    directory: CommunityDirectory = request.app.state.communities
    return directory


Communities = Annotated[CommunityDirectory, Depends(community_directory)]
