"""Roles and what each may do (CONTRACT.md, "Users and peers")."""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """Something a user may ask of the server."""

    SEARCH = "search"
    VIEW = "view"
    DOWNLOAD = "download"
    UPLOAD = "upload"
    ANONYMIZE = "anonymize"
    SEND = "send"
    IMPORT = "import"
    DELETE = "delete"
    #: Give studies labels and take them away (access by study).
    LABEL = "label"
    MANAGE_USERS = "manage-users"
    MANAGE_PEERS = "manage-peers"


_VIEWER = frozenset({Action.SEARCH, Action.VIEW, Action.DOWNLOAD})
_EDITOR = _VIEWER | {Action.UPLOAD, Action.ANONYMIZE, Action.SEND, Action.IMPORT, Action.LABEL}
_ADMIN = _EDITOR | {Action.DELETE, Action.MANAGE_USERS, Action.MANAGE_PEERS}


class Role(enum.Enum):
    """A user's role: viewer < editor < admin."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: "Role | str") -> "Role":
        """The role named ``value``; a ValueError lists the valid names."""
        if isinstance(value, Role):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"role must be one of admin, editor, viewer; got {value!r}") from None

    def may(self, action: Action) -> bool:
        """Whether this role is allowed ``action``."""
        return action in {Role.VIEWER: _VIEWER, Role.EDITOR: _EDITOR, Role.ADMIN: _ADMIN}[self]
