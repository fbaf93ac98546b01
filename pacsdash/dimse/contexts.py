"""Presentation contexts of accepted associations, negotiated cheaply.

pynetdicom gives every accepted association a ``deepcopy`` of the AE's
supported contexts. A storage SCP supports ~150 SOP classes with a dozen
transfer syntaxes each, and deep-copying re-creates (and re-validates with
regular expressions) every transfer syntax UID: about a tenth of a second of
CPU per association, before the first byte of data. Scanners and viewers
often open one association per study, so that is paid again and again.

Installed by :func:`pacsdash.dimse.compat.install`, :func:`_copy_context` gives
:class:`~pynetdicom.presentation.PresentationContext` a
``__deepcopy__`` that copies what a context owns (its lists) and shares its
UIDs, which are immutable strings. :func:`prefer_requestor_order` reorders
the copied contexts in place, again without re-validating UIDs.
"""

from __future__ import annotations

from typing import Any

from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext


def _copy_context(self: PresentationContext, memo: dict[int, Any]) -> PresentationContext:
    """``copy.deepcopy`` of a context: its own lists, shared immutable values."""
    copied = object.__new__(type(self))
    memo[id(self)] = copied
    copied.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()})
    return copied


def install() -> None:
    """Apply pacsdash's changes to pynetdicom, this module's among them
    (:func:`pacsdash.dimse.compat.install`; kept for existing callers)."""
    from pacsdash.dimse import compat

    compat.install()


def prefer_requestor_order(assoc: Association) -> None:
    """Accept, in each presentation context, the transfer syntax the requestor
    lists first among those we support (pynetdicom otherwise takes the first
    of *our* list). A scanner offering JPEG 2000 first then sends JPEG 2000,
    and a C-GET requestor offering the stored encoding gets it unchanged.

    The association's own copies of the supported contexts are reordered in
    place: their UIDs were validated when the AE's contexts were built.
    """
    proposed: dict[str, list[str]] = {}
    for rq in assoc.requestor.primitive.presentation_context_definition_list or []:
        syntaxes = proposed.setdefault(str(rq.abstract_syntax), [])
        syntaxes.extend(str(ts) for ts in rq.transfer_syntax if str(ts) not in syntaxes)
    for cx in assoc.acceptor.supported_contexts:
        wanted = proposed.get(str(cx.abstract_syntax))
        if not wanted:
            continue
        rank = {ts: position for position, ts in enumerate(wanted)}
        ours = cx.transfer_syntax  # the context's own list (pynetdicom 3 returns it, not a copy)
        reordered = sorted(ours, key=lambda ts: rank.get(str(ts), len(rank)))  # stable: the rest keep our order
        if reordered != ours:
            ours[:] = reordered
