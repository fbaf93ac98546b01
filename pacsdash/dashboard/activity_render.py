"""HTML of the ``/activity`` page's tables: associations and HTTP requests.

Every value from outside goes through a :class:`~pacsdash.dashboard.activity_names.Masker`,
which escapes it (and hides it in teaching mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pacsdash.dashboard.activity_names import Masker, status_class, status_text
from pacsdash.traffic.events import AssociationOpened, DimseMessage, HttpRequest
from pacsdash.traffic.recorder import AssociationRecord

#: Associations shown in the table; messages shown per association.
ASSOCIATIONS_SHOWN = 20
MESSAGES_SHOWN = 12
HTTP_SHOWN = 40
#: Accepted contexts listed before any message used one.
CONTEXTS_SHOWN = 6

CSS = """
.pd-activity table { border-collapse: collapse; font-size: 13px; width: 100%; }
.pd-activity th, .pd-activity td { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left;
  vertical-align: top; }
.pd-activity th { background: #f4f4f4; }
.pd-assoc { border: 1px solid #ccc; border-radius: 4px; margin: 6px 0; padding: 4px 8px; }
.pd-assoc h4 { margin: 2px 0 4px 0; font-size: 14px; }
.pd-state { border-radius: 3px; padding: 0 5px; font-size: 12px; color: #fff; background: #777; }
.pd-state-open { background: #1a7f37; } .pd-state-rejected, .pd-state-aborted { background: #b42318; }
.pd-status.ok { color: #1a7f37; } .pd-status.failure { color: #b42318; font-weight: bold; }
.pd-status.warning { color: #9a6700; } .pd-status.pending { color: #555; }
.pd-muted { color: #666; font-size: 12px; }
.pd-story li { margin-bottom: 6px; } .pd-story code { background: #f4f4f4; padding: 0 3px; }
"""


def clock(moment: float) -> str:
    """``HH:MM:SS.mmm`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(moment)) + f".{int(moment % 1 * 1000):03d}"


def size_text(size: int) -> str:
    if size < 10_000:
        return f"{size} B"
    if size < 10_000_000:
        return f"{size / 1000:.0f} kB"
    return f"{size / 1e6:.0f} MB"


def state(record: AssociationRecord) -> str:
    name = "open" if record.live else record.ended or "?"
    return f'<span class="pd-state pd-state-{name}">{name}</span>'


def peer(record: AssociationRecord, mask: Masker) -> str:
    """``AET at host:port`` of the requestor."""
    opened = record.opened
    return f"<b>{mask.text(opened.calling_aet)}</b> at {mask.host(opened.address)}:{int(opened.port)}"


def accepted_contexts(record: AssociationRecord, mask: Masker) -> str:
    """The presentation contexts accepted (PS3.8 9.3.3.2), each with its transfer
    syntax: those the messages used, or the first few before any message."""
    opened = record.opened
    accepted = [cx for cx in opened.accepted if cx[3] == "Accepted"]
    used = {m.context_id for m in record.first} | {m.context_id for m in record.last}
    shown = [cx for cx in accepted if cx[0] in used] if used else accepted[:CONTEXTS_SHOWN]
    refused = len(opened.accepted) - len(accepted)
    head = (f'<p class="pd-muted">presentation contexts: {len(opened.proposed)} proposed, {len(accepted)} accepted'
            + (f", {refused} refused" if refused else "")
            + (f"; {'used' if used else 'the first'}:" if shown else "") + "</p>")
    if not shown:
        return head
    rows = "".join(f"<tr><td>{cid}</td><td>{mask.syntax(abstract)}</td><td>{mask.syntax(syntax)}</td></tr>"
                   for cid, abstract, syntax, _ in shown)
    return (head + '<table class="pd-contexts"><tr><th>ID</th><th>Abstract syntax</th><th>Transfer syntax</th></tr>'
            + rows + "</table>")


def message_row(message: DimseMessage, mask: Masker) -> str:
    values = ", ".join(f"{mask.text(keyword)}={mask.value(keyword, value)}" for keyword, value in message.values)
    arrow = "→" if message.direction == "sent" else "←"
    carried = f"{message.pdus} PDU{'s' if message.pdus != 1 else ''}" if message.pdus else ""
    if message.size:
        carried += f", {size_text(message.size)}"
    return (f'<tr class="pd-message"><td>{clock(message.time)}</td><td>{arrow}</td>'
            f"<td>{mask.text(message.command)}</td><td>{message.message_id}</td><td>{message.context_id}</td>"
            f"<td>{mask.syntax(message.sop_class) if message.sop_class else ''}</td>"
            f'<td class="pd-status {status_class(message.status)}">{status_text(message.status)}</td>'
            f"<td>{carried}</td><td>{values}</td></tr>")


def messages_table(messages: Iterable[DimseMessage], mask: Masker) -> str:
    rows = "".join(message_row(m, mask) for m in messages)
    if not rows:
        return ""
    return ('<table class="pd-messages"><tr><th>Time</th><th></th><th>Message</th><th>ID</th><th>Context</th>'
            "<th>SOP class</th><th>Status</th><th>Carried in</th><th>Values</th></tr>" + rows + "</table>")


def counts_text(record: AssociationRecord) -> str:
    """``C-STORE-RQ ×500 · C-STORE-RSP 0000 Success ×500``."""
    parts = []
    for (command, status), count in sorted(record.counts.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
        parts.append(f"{command}{' ' + status_text(status) if status is not None else ''} ×{count}")
    return " · ".join(parts)


def studies_text(record: AssociationRecord, mask: Masker) -> str:
    if not record.studies:
        return ""
    items = "".join(
        f'<li><span class="pd-patient-name">{mask.patient(name)}</span> ({mask.patient(patient_id, "patient ID")}), '
        f"study {mask.uid(study, 'study')}: {count} instance{'s' if count != 1 else ''} archived</li>"
        for study, (name, patient_id, count) in record.studies.items()
    )
    return f'<p class="pd-muted">Received:</p><ul class="pd-studies">{items}</ul>'


def association_html(record: AssociationRecord, mask: Masker, now: float) -> str:
    """One association: who, its state, its contexts, its latest messages."""
    opened = record.opened
    end = record.ended_at if record.ended_at is not None else now
    title = (f"{state(record)} {peer(record, mask)} → {mask.text(opened.called_aet)}"
             f' <span class="pd-muted">{clock(opened.time)}, {end - opened.time:.1f} s, '
             f"{record.messages} DIMSE messages</span>")
    if not isinstance(opened, AssociationOpened):  # rejected
        return (f'<div class="pd-assoc" data-key="{mask.text(record.key)}"><h4>{title}</h4>'
                f'<p class="pd-muted">A-ASSOCIATE-RJ: {mask.text(opened.reason)}; '
                f"{len(opened.proposed)} presentation contexts were proposed</p></div>")
    latest = (record.first + list(record.last))[-MESSAGES_SHOWN:]
    return (f'<div class="pd-assoc" data-key="{mask.text(record.key)}"><h4>{title}</h4>'
            + accepted_contexts(record, mask)
            + (f'<p class="pd-counts">{mask.text(counts_text(record))}</p>' if record.counts else "")
            + studies_text(record, mask)
            + messages_table(latest, mask) + "</div>")


def associations_html(records: list[AssociationRecord], mask: Masker) -> str:
    if not records:
        return '<p class="pd-muted">No association yet: send something to the DICOM port.</p>'
    now = time.time()
    live = [r for r in records if r.live]
    ended = [r for r in records if not r.live]
    return "".join(association_html(r, mask, now) for r in (live + ended)[:ASSOCIATIONS_SHOWN])


def http_html(requests: list[HttpRequest], mask: Masker) -> str:
    """The latest HTTP requests, newest first."""
    if not requests:
        return '<p class="pd-muted">No HTTP request yet.</p>'
    rows = "".join(
        f"<tr><td>{clock(r.time)}</td><td>{mask.text(r.method)}</td><td>{mask.text(r.route)}</td>"
        f'<td class="pd-status {"ok" if r.status < 400 else "failure"}">{r.status}</td>'
        f"<td>{r.duration * 1000:.1f} ms</td></tr>"
        for r in reversed(requests[-HTTP_SHOWN:])
    )
    return ('<table class="pd-http"><tr><th>Time</th><th>Method</th><th>Route</th><th>Status</th><th>Time taken</th>'
            "</tr>" + rows + "</table>")
