"""Who may do what: users with roles, and registered DICOM peers."""

from pacsdash.access.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    Accounts,
    User,
    check_password,
    checked_labels,
    confirmed_password,
    copy_accounts,
)
from pacsdash.access.factory import has_accounts, open_accounts
from pacsdash.access.roles import Action, Role

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "AccountError",
    "Accounts",
    "Action",
    "Role",
    "User",
    "check_password",
    "checked_labels",
    "confirmed_password",
    "copy_accounts",
    "has_accounts",
    "open_accounts",
]
