"""One association told step by step, as the standard describes it.

The steps follow the DICOM upper layer (PS3.8): the TCP connection (9.1),
the A-ASSOCIATE-RQ and its answer (7.1, 9.3.2-9.3.4), the DIMSE messages in
P-DATA-TF PDUs (9.3.5, PS3.7 9.3 and 6.3.1), and the release (7.2, 9.3.6-9.3.7)
or abort (7.3, 9.3.8).
"""

from __future__ import annotations

from pacsdash.dashboard.activity_names import Masker, status_text
from pacsdash.dashboard.activity_render import clock, counts_text, size_text
from pacsdash.traffic.events import AssociationOpened, DimseMessage
from pacsdash.traffic.recorder import AssociationRecord

#: Proposed contexts listed in the A-ASSOCIATE-RQ step.
CONTEXTS_LISTED = 8
#: What each message does, with its section in PS3.7 (and PS3.4 for its service).
MEANING = {
    "C-ECHO-RQ": "asks whether pacsdash is there (Verification, PS3.7 9.1.5, PS3.4 A)",
    "C-ECHO-RSP": "answers the echo (PS3.7 9.3.5.2)",
    "C-STORE-RQ": "sends one instance to store: a command set, then the data set (PS3.7 9.3.1.1, PS3.4 B)",
    "C-STORE-RSP": "says whether the instance is stored (PS3.7 9.3.1.2; statuses in PS3.4 B.2.3)",
    "C-FIND-RQ": "asks for matches of an identifier: keys with a value are matched, empty keys are returned "
                 "(PS3.7 9.3.2.1, PS3.4 C.4.1)",
    "C-FIND-RSP": "one match per Pending response, then a final status (PS3.7 9.3.2.2)",
    "C-MOVE-RQ": "asks pacsdash to send matches to another AE (PS3.7 9.3.4.1, PS3.4 C.4.2)",
    "C-MOVE-RSP": "reports the sub-operations of the move (PS3.7 9.3.4.2)",
    "C-GET-RQ": "asks for matches sent back over this association (PS3.7 9.3.3.1, PS3.4 C.4.3)",
    "C-GET-RSP": "reports the sub-operations of the get (PS3.7 9.3.3.2)",
    "C-CANCEL-RQ": "stops a C-FIND, C-MOVE or C-GET in progress (PS3.7 9.3.2.3)",
}


def _pdu_limit(length: int) -> str:
    """Maximum Length Received (PS3.8 D.1): 0 means no limit."""
    return f"PDUs of up to {length} bytes" if length else "PDUs of any length"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _who(record: AssociationRecord, mask: Masker) -> str:
    opened = record.opened
    return f"<b>{mask.text(opened.calling_aet)}</b> ({mask.host(opened.address)}:{int(opened.port)})"


def _request_step(record: AssociationRecord, mask: Masker) -> str:
    opened = record.opened
    listed = "".join(
        f"<li>context {cid}: {mask.syntax(abstract)} in "
        + ", ".join(mask.syntax(ts) for ts in syntaxes) + "</li>"
        for cid, abstract, syntaxes in opened.proposed[:CONTEXTS_LISTED]
    )
    more = len(opened.proposed) - CONTEXTS_LISTED
    details = ""
    if isinstance(opened, AssociationOpened):
        details = (f" It can receive {_pdu_limit(opened.requestor_max_pdu)}"
                   + (f"; its implementation is {mask.text(opened.implementation_class_uid)}"
                      f" {mask.text(opened.implementation_version)}" if opened.implementation_class_uid else "")
                   + " (user information, PS3.8 D.1, D.3.3.2).")
    proposes = _plural(len(opened.proposed), "presentation context")
    return (f"<li><b>A-ASSOCIATE-RQ</b> (PS3.8 9.3.2) at {clock(opened.time)}: {_who(record, mask)} calls the AE "
            f"title <b>{mask.text(opened.called_aet)}</b> and proposes {proposes}, each an abstract syntax "
            "(what it wants to do) with the transfer syntaxes (encodings) it can use:"
            f"<ul>{listed}</ul>" + (f"and {more} more.<br>" if more > 0 else "") + details + "</li>")


def _answer_step(record: AssociationRecord, mask: Masker) -> str:
    opened = record.opened
    if not isinstance(opened, AssociationOpened):
        return (f"<li><b>A-ASSOCIATE-RJ</b> (PS3.8 9.3.4): pacsdash refuses: {mask.text(opened.reason)}. "
                "No DIMSE message can be sent; the connection closes.</li>")
    accepted = [cx for cx in opened.accepted if cx[3] == "Accepted"]
    listed = "".join(f"<li>context {cid}: {mask.syntax(abstract)} accepted in {mask.syntax(syntax)}</li>"
                     for cid, abstract, syntax, _ in accepted[:CONTEXTS_LISTED])
    more = len(accepted) - CONTEXTS_LISTED
    refused = len(opened.accepted) - len(accepted)
    return ("<li><b>A-ASSOCIATE-AC</b> (PS3.8 9.3.3): pacsdash accepts the association. For each proposed context "
            "it answers with a result and, if accepted, the one transfer syntax both sides will use"
            f" ({len(accepted)} accepted" + (f", {refused} refused" if refused else "") + "):"
            f"<ul>{listed}</ul>" + (f"and {more} more.<br>" if more > 0 else "")
            + f"pacsdash can receive {_pdu_limit(opened.acceptor_max_pdu)}.</li>")


def _message_step(message: DimseMessage, mask: Masker) -> str:
    who = "The peer" if message.direction == "received" else "pacsdash"
    carried = ""
    if message.pdus:
        carried = (f" It travels in {message.pdus} P-DATA-TF PDU{'s' if message.pdus != 1 else ''} (PS3.8 9.3.5)"
                   + (f", {size_text(message.size)} of data set" if message.size else "") + ".")
    values = ""
    if message.values:
        values = " Values: " + ", ".join(f"<code>{mask.text(k)}={mask.value(k, v)}</code>" for k, v in message.values)
    status = f" Status <b>{status_text(message.status)}</b>." if message.status is not None else ""
    return (f"<li><b>{mask.text(message.command)}</b> at {clock(message.time)}, message ID {message.message_id} on "
            f"context {message.context_id}" + (f" ({mask.syntax(message.sop_class)})" if message.sop_class else "")
            + f": {who} {MEANING.get(message.command, 'sends a DIMSE message (PS3.7 9.3)')}.{status}{carried}{values}"
            + "</li>")


def _end_step(record: AssociationRecord) -> str:
    if record.live:
        return "<li>The association is still open: more messages may follow, then a release.</li>"
    if record.ended == "released":
        return ("<li><b>A-RELEASE-RQ</b> and <b>A-RELEASE-RP</b> (PS3.8 9.3.6, 9.3.7) at "
                f"{clock(record.ended_at or 0)}: the peer asks to end, pacsdash agrees, the connection closes.</li>")
    if record.ended == "aborted":
        return ("<li><b>A-ABORT</b> (PS3.8 9.3.8) at "
                f"{clock(record.ended_at or 0)}: the association ends at once, without a release.</li>")
    if record.ended == "rejected":
        return ""
    return f"<li>The connection closed at {clock(record.ended_at or 0)} without a release or an abort.</li>"


def story_html(record: AssociationRecord | None, mask: Masker) -> str:
    """The steps of one association as an ordered list."""
    if record is None:
        return '<p class="pd-muted">No association to explain yet.</p>'
    steps = [f"<li>TCP connection from {_who(record, mask)} to pacsdash's DICOM port (PS3.8 9.1).</li>",
             _request_step(record, mask), _answer_step(record, mask)]
    steps += [_message_step(m, mask) for m in record.first]
    rest = record.messages - len(record.first)
    if rest > 0:
        steps.append(f"<li>… and {rest} more DIMSE messages; in all: {mask.text(counts_text(record))}.</li>")
    steps.append(_end_step(record))
    return '<ol class="pd-story">' + "".join(steps) + "</ol>"
