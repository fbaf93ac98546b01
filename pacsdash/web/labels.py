"""``/api/studies/{uid}/labels[/{label}]``: a study's labels (editor).

Labels decide who sees a study (:mod:`pacsdash.archive.labels`); they are
changed through :class:`~pacsdash.archive.actions.StudyActions`, which checks
the label, leaves a ``label_change`` in the audit trail and answers 404 for a
study the caller may not see, as for an unknown one.
"""

from __future__ import annotations

from tornado.ioloop import IOLoop

from pacsdash.access import Action
from pacsdash.archive.actions import ActionError
from pacsdash.web.base import ApiError, BaseHandler
from pacsdash.web.qido import check_uid_path


class StudyLabelsHandler(BaseHandler):
    """``GET /api/studies/{uid}/labels`` → ``{"StudyInstanceUID", "labels": [...]}``."""

    async def get(self, study: str) -> None:
        self.require(Action.LABEL)
        check_uid_path(study, "StudyInstanceUID")
        actor = self.actor
        try:
            labels = await IOLoop.current().run_in_executor(None, lambda: self.app.actions.labels(study, actor))
        except ActionError as exc:
            raise ApiError(exc.status, str(exc)) from None
        self.write_json({"StudyInstanceUID": study, "labels": labels})


class StudyLabelHandler(BaseHandler):
    """``PUT`` / ``DELETE /api/studies/{uid}/labels/{label}``: add or take
    away one label; answers the study's labels and whether anything changed."""

    async def put(self, study: str, label: str) -> None:
        await self._change(study, label, adding=True)

    async def delete(self, study: str, label: str) -> None:
        await self._change(study, label, adding=False)

    async def _change(self, study: str, label: str, adding: bool) -> None:
        self.require(Action.LABEL)
        check_uid_path(study, "StudyInstanceUID")
        actor, actions = self.actor, self.app.actions

        def change() -> tuple[bool, list[str]]:
            changed = (actions.add_label if adding else actions.remove_label)(study, label, actor)
            try:
                return changed, actions.labels(study, actor)
            except ActionError:  # the caller took away the label that let them see it
                return changed, []

        try:
            changed, labels = await IOLoop.current().run_in_executor(None, change)
        except ActionError as exc:
            raise ApiError(exc.status, str(exc)) from None
        self.write_json({"StudyInstanceUID": study, "labels": labels, "changed": changed})
