"""The labels of the study shown (issue 15, access by study): chips for
everyone who sees the study; for a role that may label (editor, admin) each
chip has a × that removes its label, and a box adds one.

Changes go through :meth:`StudyActions.add_label` / ``remove_label`` with the
session's actor (its scope, so only a visible study is changed), which check
the label's syntax and write the ``label_change`` audit entry; the role is
checked again at the click, as the accounts say then. A user restricted to
labels is not offered to remove the last label that lets them see the study
(they could not undo it).
"""

from __future__ import annotations

import asyncio
import html
from functools import partial
from typing import Any

import panel as pn
import param

from pacsdash.access import Action, Role
from pacsdash.archive.actions import ActionError, Actor
from pacsdash.archive.scoped import scope_of

CHIPS_CSS = """
.pd-label-chip { display: inline-block; padding: 1px 8px; margin: 2px 4px 2px 0; border-radius: 10px;
  background: #e8eef5; color: #1f3b57; font-size: 12px; border: 1px solid #c9d6e4; white-space: nowrap; }
.pd-no-labels { color: #777; font-size: 12px; }
"""
CHIP_BUTTON_CSS = """
:host .bk-btn { border-radius: 10px; background: #e8eef5; color: #1f3b57; font-size: 12px; border: 1px solid #c9d6e4;
  padding: 1px 8px; }
:host .bk-btn:hover { background: #f6e3e3; border-color: #d9a5a5; }
"""
MESSAGE_CSS = ".pd-labels-message { font-size: 12px; color: #0b4f8a; } .pd-labels-message.pd-warn { color: #8a3b0b; }"


def chips_html(labels: list[str]) -> str:
    """Labels as chips (escaped); a quiet "no labels" without any."""
    if not labels:
        return '<span class="pd-no-labels">No labels</span>'
    return "".join(f'<span class="pd-label-chip">{html.escape(label)}</span>' for label in labels)


class StudyLabels(pn.viewable.Viewer):
    """The labels of ``study_uid``; editing for a role that may :attr:`Action.LABEL`."""

    archive = param.Parameter(doc="The archive as the session sees it (scoped for a restricted user).")
    actions = param.Parameter(doc="The archive's StudyActions (add_label, remove_label).")
    current_role = param.Callable(default=None, doc="The user's role now (None: gone); default: ``role``.")
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    user = param.String(default="anonymous", doc="Who acts (for the audit trail).")
    study_uid = param.String(default="", doc="The study shown (empty: none).")
    labels = param.List(default=[], item_type=str, doc="The shown study's labels, sorted.")
    shown = param.Boolean(default=False, doc="Whether a study is shown (one the session may see).")
    message = param.String(default="", doc="The outcome of the last change (plain text).")
    show_message = param.Boolean(default=True, doc="Show ``message`` here (False: the page shows it).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._editing = self.role.may(Action.LABEL)  # never offered to a viewer; each change checks again
        self._chips = pn.pane.HTML("", stylesheets=[CHIPS_CSS], margin=(9, 3))
        self._chip_buttons = pn.Row(margin=(3, 0))
        self._new = pn.widgets.TextInput(placeholder="new label", width=110, margin=(8, 2),
                                         css_classes=["pd-label-new"])
        self._add = pn.widgets.Button(label="Add label", width=85, margin=(8, 5))
        self._add.on_click(self.add)
        self._new.param.watch(lambda e: pn.state.execute(self.add) if e.new else None, "enter_pressed")
        self._message = pn.pane.HTML("", stylesheets=[MESSAGE_CSS], margin=(12, 5), max_width=260)
        self._load()

    @property
    def _actor(self) -> Actor:
        return Actor(self.user, scope=scope_of(self.archive))

    @param.depends("study_uid", watch=True)
    def _load(self) -> None:
        """Read the labels of the study shown (nothing of a study the session may not see)."""
        self.message = ""
        self._new.param.update(value="", value_input="")
        self.shown = self._visible(self.study_uid)
        self.labels = self.archive.labels_of(self.study_uid) if self.shown else []
        self._show_labels()  # also when the list is the same as before

    def _visible(self, uid: str) -> bool:
        """Whether ``uid`` is a study the session sees (a DICOMweb source has no labels: never)."""
        sees = getattr(self.archive, "sees", None)
        return bool(uid) and sees is not None and hasattr(self.archive, "labels_of") and sees(uid)

    def _removable(self, label: str) -> bool:
        """Whether removing ``label`` leaves the study visible to the session (always, unrestricted)."""
        scope = scope_of(self.archive)
        return scope is None or scope.sees(set(self.labels) - {label})

    def _chip_button(self, label: str) -> pn.widgets.Button:
        button = pn.widgets.Button(label=f"{label} ×", description=f"Remove the label {label}", margin=(5, 3),
                                   stylesheets=[CHIP_BUTTON_CSS], css_classes=["pd-label-remove"])
        button.on_click(partial(self._on_remove, label))
        return button

    async def _on_remove(self, label: str, *_: Any) -> None:
        await self.remove(label)

    @param.depends("labels", watch=True)
    def _show_labels(self) -> None:
        removable = [label for label in self.labels if self._editing and self._removable(label)]
        self._chips.object = chips_html([x for x in self.labels if x not in removable]) if self.shown else ""
        self._chips.visible = not removable or len(removable) < len(self.labels)
        self._chip_buttons.objects = [self._chip_button(label) for label in removable]

    @param.depends("message", watch=True)
    def _show_message(self) -> None:
        warn = self.message and not self.message.startswith(("Added", "Removed"))
        self._message.object = (f'<span class="pd-labels-message{" pd-warn" if warn else ""}">'
                                f"{html.escape(self.message)}</span>") if self.message and self.show_message else ""

    def _may(self) -> bool:
        """The role as the accounts say now (a role changed since the page opened counts)."""
        now = self.current_role() if self.current_role is not None else self.role
        return now is not None and now.may(Action.LABEL)

    async def add(self, *_: Any) -> None:
        """Give the study shown the label typed."""
        label = (self._new.value_input or self._new.value or "").strip()
        if not label:
            self.message = "Type a label to add."
            return
        if await self._change(label, adding=True):
            self._new.param.update(value="", value_input="")

    async def remove(self, label: str) -> None:
        """Take ``label`` from the study shown."""
        if not self._removable(label):
            self.message = (f"Could not remove the label {label}: you see this study through it, and could not "
                            "see it afterwards. An admin can remove it.")
            return
        await self._change(label, adding=False)

    async def _change(self, label: str, adding: bool) -> bool:
        """Add or remove ``label`` through the StudyActions; True if done (or already so)."""
        verb = "add" if adding else "remove"
        if not self._may():
            self.message = "Your role may not change labels."
            return False
        if not self.shown or self.actions is None:
            self.message = "No study to label."
            return False
        uid, actor = self.study_uid, self._actor
        change = self.actions.add_label if adding else self.actions.remove_label
        try:
            changed = await asyncio.get_running_loop().run_in_executor(None, lambda: change(uid, label, actor))
        except ActionError as exc:
            self.message = f"Could not {verb} the label: {exc}"
            return False
        if uid != self.study_uid:
            return True  # another study was opened meanwhile: it shows its own labels
        self.labels = self.archive.labels_of(uid) if self._visible(uid) else []
        if adding:
            self.message = f"Added the label {label}." if changed else f"The study already has the label {label}."
        else:
            self.message = f"Removed the label {label}." if changed else f"The study did not have the label {label}."
        return True

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = [pn.pane.HTML("<small>Labels:</small>", margin=(14, 0, 0, 10)),
                            pn.Row(self._chips, self._chip_buttons, margin=0, css_classes=["pd-labels"])]
        if self._editing:
            parts += [self._new, self._add]
        parts.append(self._message)
        return pn.Row(*parts, css_classes=["pd-study-labels"], visible=self.param.shown)
