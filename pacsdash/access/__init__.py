"""Who may do what: users with roles, and registered DICOM peers."""

from pacsdash.access.accounts import AccountError, Accounts, User, confirmed_password
from pacsdash.access.roles import Action, Role

__all__ = ["AccountError", "Accounts", "Action", "Role", "User", "confirmed_password"]
