"""Files picked or dropped in the browser, received over the session's websocket.

:class:`FileReceiver` is a ``pn.custom.JSComponent`` with its own drop zone
(files, folders, ZIPs). The browser first *announces* every file it was
given (an id, the name, the size) before it sends a byte of any, then sends
each file in chunks that the server acknowledges. So the server always
knows the whole of what the user picked and what has not arrived yet, and a
"Store" pressed early can wait for the rest instead of storing part of it
(Panel's FileDropper tells the server of a file only when its first chunk
arrives, which let an early "Store" drop files without a word).

Nothing here touches the archive: :meth:`FileReceiver.take` hands over what
arrived, with a reason for each picked file that did not.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar
from uuid import uuid4

import panel as pn
import param

LOGGER = logging.getLogger(__name__)

#: Most bytes per chunk the browser sends (one websocket message each).
CHUNK_SIZE = 2**20
#: Most bytes the browser may send ahead of the server's acknowledgements.
#: Within it, the browser keeps about half a second of the throughput it
#: measures in flight: clicks travel the same websocket, and on a slow link a
#: full window queued ahead of them made the page deaf for a minute.
WINDOW = 4 * 2**20
#: Most files one page may have announced and not yet stored.
MAX_FILES = 20_000
#: Longest file name kept (the rest is cut; names are only ever shown).
MAX_NAME = 1000
#: Bytes of one picked file kept in memory; beyond, it is spooled to disk.
IN_MEMORY = 2 * 2**20

WAITING, RECEIVING, ARRIVED, FAILED, REFUSED = "waiting", "receiving", "arrived", "failed", "refused"
#: States in which a file is still on its way.
UNFINISHED = (WAITING, RECEIVING)


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


@dataclass
class PickedFile:
    """One file the browser announced, and what has arrived of it.

    What arrived is spooled: kept in memory up to :data:`IN_MEMORY` bytes,
    then in a file of its own (mode 0600) in the receiver's spool folder,
    so an upload of a gigabyte does not sit in the server's memory.
    """

    id: str
    name: str
    size: int
    state: str = WAITING
    reason: str = ""
    received: int = 0
    spool: Any = field(default=None, repr=False)

    def write(self, chunk: bytes, folder: str | None) -> None:
        if self.spool is None:
            self.spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=folder, prefix="upload-")
        self.spool.write(chunk)

    def handed_over(self) -> BinaryIO:
        """What arrived, as a file read from its start (the caller closes it,
        which removes it); the picked file keeps nothing."""
        spool, self.spool = self.spool, None
        if spool is None:
            spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # an empty file
        spool.seek(0)
        return spool

    def discard(self) -> None:
        """Drop what arrived (removed, failed, refused)."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    @property
    def data(self) -> bytes:
        """What arrived so far (for tests and small files)."""
        if self.spool is None:
            return b""
        position = self.spool.tell()
        self.spool.seek(0)
        data = self.spool.read()
        self.spool.seek(position)
        return data


RECEIVER_CSS = """
:host { display: block; }
.pd-drop { border: 2px dashed #9aa5b1; border-radius: 8px; padding: 18px; text-align: center; color: #333;
  background: #f7f9fb; font: 14px system-ui, sans-serif; }
.pd-drop.pd-over { border-color: #1f6feb; background: #eaf2ff; }
.pd-drop button { margin: 8px 4px 0; padding: 5px 12px; border: 1px solid #888; border-radius: 4px;
  background: #fff; cursor: pointer; font: inherit; }
.pd-drop button:hover { background: #eef; }
.pd-receiver-summary { margin: 8px 0 4px; font: 13px system-ui, sans-serif; }
.pd-files { width: 100%; border-collapse: collapse; font: 12px system-ui, sans-serif; }
.pd-files td { padding: 2px 6px; border-bottom: 1px solid #eee; word-break: break-all; }
.pd-files td.pd-size, .pd-files td.pd-state { white-space: nowrap; width: 1%; }
.pd-files tr[data-state=refused] td.pd-state, .pd-files tr[data-state=failed] td.pd-state { color: #a00; }
.pd-files tr[data-state=arrived] td.pd-state { color: #176f2c; }
.pd-files button.pd-remove { border: none; background: none; cursor: pointer; color: #666; font-size: 14px; }
.pd-more { font: 12px system-ui, sans-serif; color: #555; margin-top: 4px; }
"""

RECEIVER_ESM = r"""
const LISTED = 200
// One upload per FileReceiver (its key), kept across re-renders of its view
// (shown again after the page was rebuilt or reconnected): the browser's File objects live here.
const UPLOADS = new Map()

function el(tag, cls, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text !== undefined) e.textContent = text
  return e
}

function mb(n) { return (n / 1048576).toLocaleString(undefined, {minimumFractionDigits: 1, maximumFractionDigits: 1}) + " MB" }

// Every file of a drop, folders walked (a folder's entries come in batches).
async function dropped(items) {
  const out = []
  const walk = async (entry) => {
    if (entry.isFile) {
      const file = await new Promise((ok, no) => entry.file(ok, no))
      out.push({file, name: entry.fullPath.replace(/^\//, "")})
    } else if (entry.isDirectory) {
      const reader = entry.createReader()
      for (;;) {
        const batch = await new Promise((ok, no) => reader.readEntries(ok, no))
        if (!batch.length) break
        for (const child of batch) await walk(child)
      }
    }
  }
  const entries = [], plain = []
  for (const item of items) {
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null
    if (entry) entries.push(entry)
    else if (item.getAsFile && item.getAsFile()) plain.push(item.getAsFile())
  }
  for (const file of plain) out.push({file, name: file.name})
  for (const entry of entries) await walk(entry)
  return out
}

function upload(key) {
  if (!UPLOADS.has(key)) {
    UPLOADS.set(key, {token: Math.random().toString(36).slice(2, 10), counter: 0, files: new Map(), queue: [],
                      sending: false, resuming: false, model: null, redraw: () => {}, acks: [], acked: 0})
  }
  return UPLOADS.get(key)
}

const OPEN = new Set(["waiting", "receiving"])
// Flow control: in flight, about AHEAD_MS of the throughput the acknowledgements
// show (clicks wait behind it on the same websocket), within the server's window.
const AHEAD_MS = 500, MIN_CHUNK = 16384, FIRST_WINDOW = 256 * 1024, MEASURED_MS = 3000

function budget(u) {
  const now = performance.now()
  while (u.acks.length > 2 && now - u.acks[0][0] > MEASURED_MS) u.acks.shift()
  let window = FIRST_WINDOW
  if (u.acks.length >= 2) {
    const [t0, b0] = u.acks[0], [t1, b1] = u.acks[u.acks.length - 1]
    if (t1 - t0 >= 50) window = Math.max(4 * MIN_CHUNK, (b1 - b0) / (t1 - t0) * AHEAD_MS)
  }
  window = Math.min(u.model.window, window)
  return {window, chunk: Math.min(u.model.chunk_size, Math.max(MIN_CHUNK, Math.floor(window / 4)))}
}

// Bytes sent and not yet acknowledged (an empty file counts as one byte).
function inflight(u) {
  let n = 0
  for (const f of u.files.values()) if (OPEN.has(f.state)) n += Math.max(f.sent - f.acked, f.size === 0 && f.sentEmpty && !f.acked ? 1 : 0)
  return n
}

async function pump(u) {
  if (u.sending) return
  u.sending = true
  try {
    while (u.model && !u.resuming && u.queue.length && inflight(u) < budget(u).window) {
      const id = u.queue[0], f = u.files.get(id)
      if (!f || !OPEN.has(f.state) || (f.sent >= f.size && (f.size > 0 || f.sentEmpty))) { u.queue.shift(); continue }
      const start = f.sent, end = Math.min(start + budget(u).chunk, f.size)
      let data
      try {
        data = await f.file.slice(start, end).arrayBuffer()
      } catch (err) {
        f.state = "failed"; f.reason = "the browser could not read this file"
        if (u.model) u.model.send_msg({type: "unreadable", id, reason: String(err && err.message || err)})
        u.queue.shift(); u.redraw(); continue
      }
      if (!u.model || u.resuming || u.files.get(id) !== f || f.sent !== start) continue  // changed meanwhile
      u.model.send_msg({type: "chunk", id, offset: start, data})
      f.sent = end
      if (f.size === 0) f.sentEmpty = true
      if (f.state === "waiting") f.state = "receiving"
    }
  } finally {
    u.sending = false
  }
  u.redraw()
}

export function render({ model }) {
  const u = upload(model.key)
  u.model = model

  const root = el("div", "pd-receiver")
  const zone = el("div", "pd-drop")
  zone.append(el("div", null, model.label))
  const pickFiles = el("button", "pd-pick-files", "Choose files"); pickFiles.type = "button"
  const pickFolder = el("button", "pd-pick-folder", "Choose a folder"); pickFolder.type = "button"
  const inputFiles = el("input", "pd-input-files"); inputFiles.type = "file"; inputFiles.multiple = true
  inputFiles.hidden = true
  const inputFolder = el("input", "pd-input-folder"); inputFolder.type = "file"; inputFolder.multiple = true
  inputFolder.hidden = true; inputFolder.webkitdirectory = true
  zone.append(pickFiles, pickFolder, inputFiles, inputFolder)
  const summary = el("div", "pd-receiver-summary")
  const table = el("table", "pd-files")
  const more = el("div", "pd-more")
  root.append(zone, summary, table, more)

  function draw() {
    let all = 0, arrived = 0, bytes = 0, got = 0, refused = 0, listed = 0
    table.replaceChildren()
    for (const [id, f] of u.files) {
      all++
      if (f.state === "arrived") arrived++
      if (f.state === "refused" || f.state === "failed") refused++
      else { bytes += f.size; got += f.acked }
      if (listed >= LISTED) continue
      listed++
      const row = el("tr"); row.dataset.state = f.state; row.dataset.id = id
      const state = OPEN.has(f.state)
        ? (f.size ? `${Math.floor(100 * f.acked / f.size)}%` : "0%") + (f.state === "waiting" ? " (waiting)" : "")
        : f.state + (f.reason ? ": " + f.reason : "")
      const remove = el("button", "pd-remove", "\u00d7"); remove.type = "button"; remove.title = "Remove from this upload"
      remove.addEventListener("click", () => forget(id))
      const cell = el("td"); cell.append(remove)
      row.append(el("td", "pd-name", f.name), el("td", "pd-size", mb(f.size)), el("td", "pd-state", state), cell)
      table.append(row)
    }
    more.textContent = all > LISTED ? `\u2026 and ${all - LISTED} more files` : ""
    const open = all - arrived - refused, kept = all - refused
    summary.textContent = all === 0 ? "" :
      `${arrived} of ${kept} file${kept === 1 ? "" : "s"} received (${mb(got)} of ${mb(bytes)})`
      + (open ? `, ${open} still uploading` : "") + (refused ? `; ${refused} not accepted` : "")
    root.dataset.arrived = String(arrived); root.dataset.open = String(open)
  }
  let drawPending = false
  u.redraw = () => {
    if (drawPending) return
    drawPending = true
    requestAnimationFrame(() => { drawPending = false; draw() })
  }

  function forget(id) {
    if (!u.files.delete(id)) return
    model.send_msg({type: "remove", id})
    u.redraw(); pump(u)
  }

  function add(picked) {
    if (!picked.length) return
    const announced = []
    for (const {file, name} of picked) {
      const id = `${u.token}-${++u.counter}`
      u.files.set(id, {file, name, size: file.size, sent: 0, acked: 0, state: "waiting", reason: "", sentEmpty: false})
      u.queue.push(id)
      announced.push({id, name, size: file.size})
    }
    model.send_msg({type: "announce", files: announced})  // the whole list, before any byte of it
    u.redraw(); pump(u)
  }

  model.on("msg:custom", (m) => {
    if (!m || typeof m !== "object" || u.model !== model) return
    if (m.type === "ack") {
      const f = u.files.get(m.id)
      if (f && OPEN.has(f.state)) {
        if (!m.rewind && m.received > f.acked) {
          u.acked += m.received - f.acked
          u.acks.push([performance.now(), u.acked])
        }
        f.acked = m.received
        if (m.rewind) { f.sent = m.received; f.sentEmpty = false; if (!u.queue.includes(m.id)) u.queue.push(m.id) }
        if (m.done) f.state = "arrived"
      }
    } else if (m.type === "refuse" || m.type === "failed") {
      for (const id of m.ids || []) {
        const f = u.files.get(id)
        if (f) { f.state = m.type === "refuse" ? "refused" : "failed"; f.reason = m.reason || "" }
      }
    } else if (m.type === "taken") {
      for (const id of m.ids || []) u.files.delete(id)
    } else if (m.type === "resumed") {
      u.resuming = false
    }
    u.redraw(); pump(u)
  })
  model.on("remove", () => { if (u.model === model) u.model = null })

  pickFiles.addEventListener("click", () => inputFiles.click())
  pickFolder.addEventListener("click", () => inputFolder.click())
  for (const input of [inputFiles, inputFolder]) {
    input.addEventListener("change", () => {
      add(Array.from(input.files).map((file) => ({file, name: file.webkitRelativePath || file.name})))
      input.value = ""
    })
  }
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("pd-over") })
  zone.addEventListener("dragleave", () => zone.classList.remove("pd-over"))
  zone.addEventListener("drop", async (e) => {
    e.preventDefault(); zone.classList.remove("pd-over")
    add(await dropped(Array.from(e.dataTransfer.items || [])))
  })
  if (!u.unload) {  // leaving the page loses what is not stored: ask first
    u.unload = (e) => { if (u.files.size) { e.preventDefault(); e.returnValue = "" } }
    window.addEventListener("beforeunload", u.unload)
  }
  // Shown again (a tab switched back): the server says how far each open file got.
  const open = [...u.files].filter(([, f]) => OPEN.has(f.state)).map(([id, f]) => ({id, name: f.name, size: f.size}))
  if (open.length) { u.resuming = true; model.send_msg({type: "resume", files: open}) }
  draw()
  pump(u)
  return root
}
"""


class FileReceiver(pn.custom.JSComponent):
    """A drop zone whose files reach the server announced, in acknowledged chunks.

    ``allowed()`` is asked at every message: a user who may not upload (or
    no longer may) has every file refused and nothing kept. ``limit`` bounds
    the bytes held at once (announced files beyond it are refused before
    they are sent).
    """

    key = param.String(default="", doc="Names this receiver's upload in the page (set at construction).")
    label = param.String(default="Drop DICOM files, ZIPs or folders here", doc="The drop zone's text.")
    chunk_size = param.Integer(default=CHUNK_SIZE, bounds=(1024, 16 * 2**20), constant=True)
    window = param.Integer(default=WINDOW, bounds=(1024, 64 * 2**20), constant=True)
    picked = param.Integer(default=0, doc="Files announced and not yet taken (refused ones aside).")
    arrived = param.Integer(default=0, doc="Of those, files that arrived whole.")

    _esm = RECEIVER_ESM
    _stylesheets: ClassVar[list[str]] = [RECEIVER_CSS]

    def __init__(self, allowed: Callable[[], bool], limit: int, spool_dir: str | None = None, **params: Any) -> None:
        params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("key", uuid4().hex)
        super().__init__(**params)
        self._allowed = allowed
        self._limit = limit
        #: Where files larger than :data:`IN_MEMORY` are spooled while they arrive (None: the system's).
        self.spool_dir = spool_dir
        self.files: dict[str, PickedFile] = {}
        self.closed = False  # every view of it is gone (the page was closed)
        self.on_refusal: Callable[[str], None] = lambda message: None

    # -- what the rest of the page asks ---------------------------------------
    def held(self) -> int:
        """Bytes announced or received and not yet taken."""
        return sum(f.size for f in self.files.values() if f.state not in (FAILED, REFUSED))

    def unfinished(self, ids: Iterable[str]) -> list[str]:
        """Of ``ids``, those still uploading."""
        return [i for i in ids if i in self.files and self.files[i].state in UNFINISHED]

    def take(self, ids: Iterable[str]) -> tuple[list[tuple[str, BinaryIO]], list[PickedFile]]:
        """Hand over ``ids``: ``(name, file)`` of those that arrived (files read
        from their start; closing one removes it), and the files that did not
        (refused, failed, or still on their way) with their state."""
        arrived: list[tuple[str, BinaryIO]] = []
        missing: list[PickedFile] = []
        taken = []
        for file_id in ids:
            picked = self.files.pop(file_id, None)
            if picked is None:
                continue  # removed by the user
            taken.append(file_id)
            if picked.state == ARRIVED:
                arrived.append((picked.name, picked.handed_over()))
            else:
                picked.discard()
                missing.append(picked)
        self._send_msg({"type": "taken", "ids": taken})
        self._count()
        return arrived, missing

    # -- the protocol ----------------------------------------------------------
    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if not self._allowed():
            ids = [str(f.get("id"))[:64] for f in data.get("files") or [] if isinstance(f, dict)] \
                if kind == "announce" else [str(data.get("id"))[:64]]
            self._refuse(list(self.files) + ids, "your role may not upload")
            for picked in self.files.values():
                picked.discard()
            self.files.clear()
            self._count()
            return
        if kind == "announce":
            self._announce(data.get("files"))
        elif kind == "resume":
            self._resume(data.get("files"))
        elif kind == "chunk":
            self._chunk(data)
        elif kind == "unreadable":
            self._fail(str(data.get("id"))[:64], "the browser could not read it")
        elif kind == "remove":
            removed = self.files.pop(str(data.get("id"))[:64], None)
            if removed is not None:
                removed.discard()
        self._count()

    def _announce(self, announced: Any) -> None:
        if not isinstance(announced, list):
            return
        held = self.held()
        too_many, too_large = [], []
        for entry in announced:
            if not isinstance(entry, dict):
                continue
            file_id, name, size = str(entry.get("id"))[:64], str(entry.get("name") or "unnamed")[:MAX_NAME], entry.get("size")
            if file_id in self.files or isinstance(size, bool) or not isinstance(size, int) or size < 0:
                continue
            if len(self.files) >= MAX_FILES:
                self.files[file_id] = PickedFile(file_id, name, size, REFUSED, f"more than {MAX_FILES:,} files at once")
                too_many.append(file_id)
            elif held + size > self._limit:
                self.files[file_id] = PickedFile(file_id, name, size, REFUSED,
                                                 f"would make the upload larger than the {megabytes(self._limit)} "
                                                 f"allowed ([server] max_upload_mb)")
                too_large.append(file_id)
            else:
                self.files[file_id] = PickedFile(file_id, name, size)
                held += size
        for ids in (too_many, too_large):
            if ids:
                reason = self.files[ids[0]].reason
                self._send_msg({"type": "refuse", "ids": ids, "reason": reason})
                self._refused(f"{len(ids)} file{'s' if len(ids) != 1 else ''} ({self.files[ids[0]].name!s:.200}"
                              f"{' …' if len(ids) > 1 else ''}) {reason}")

    def _chunk(self, data: dict) -> None:
        file_id = str(data.get("id"))[:64]
        picked = self.files.get(file_id)
        if picked is None or picked.state not in UNFINISHED:
            return  # removed, refused or failed: the rest of it is dropped
        chunk = data.get("data")
        if isinstance(chunk, memoryview | bytearray):
            chunk = bytes(chunk)
        if not isinstance(chunk, bytes) or data.get("offset") != picked.received \
                or picked.received + len(chunk) > picked.size or len(chunk) > self.chunk_size:
            self._fail(file_id, "arrived damaged (a chunk out of order or beyond its size); pick it again")
            return
        try:
            picked.write(chunk, self.spool_dir)
        except OSError as exc:  # the spool folder is full or gone: this file fails, said why
            LOGGER.warning("dashboard upload: cannot spool %r: %s", picked.name[:200], exc)
            self._fail(file_id, f"could not be kept on the server while uploading ({exc.strerror or exc})")
            return
        picked.received += len(chunk)
        picked.state = ARRIVED if picked.received == picked.size else RECEIVING
        self._send_msg({"type": "ack", "id": file_id, "received": picked.received, "done": picked.state == ARRIVED})

    def _resume(self, files: Any) -> None:
        """A view shown again: tell it how far each of its open files got
        (it sends the rest from there); files never announced are announced now."""
        if not isinstance(files, list):
            return
        unknown = []
        for entry in files:
            if not isinstance(entry, dict):
                continue
            picked = self.files.get(str(entry.get("id"))[:64])
            if picked is None:
                unknown.append(entry)
            elif picked.state in (FAILED, REFUSED):
                self._send_msg({"type": "failed" if picked.state == FAILED else "refuse", "ids": [picked.id],
                                "reason": picked.reason})
            else:
                self._send_msg({"type": "ack", "id": picked.id, "received": picked.received,
                                "done": picked.state == ARRIVED, "rewind": True})
        self._announce(unknown)
        for entry in unknown:  # announced only now: everything of them is still to send
            picked = self.files.get(str(entry.get("id"))[:64])
            if picked is not None and picked.state == WAITING:
                self._send_msg({"type": "ack", "id": picked.id, "received": 0, "done": False, "rewind": True})
        self._send_msg({"type": "resumed"})

    def _fail(self, file_id: str, reason: str) -> None:
        picked = self.files.get(file_id)
        if picked is None:
            return
        picked.state, picked.reason = FAILED, reason
        picked.discard()
        self._send_msg({"type": "failed", "ids": [file_id], "reason": reason})

    def _refuse(self, ids: list[str], reason: str) -> None:
        self._send_msg({"type": "refuse", "ids": ids, "reason": reason})
        self._refused(reason)

    def _refused(self, message: str) -> None:
        LOGGER.warning("dashboard upload refused: %s", message)
        self.on_refusal(message)

    def _count(self) -> None:
        live = [f for f in self.files.values() if f.state not in (REFUSED,)]
        self.param.update(picked=len(live), arrived=sum(f.state == ARRIVED for f in live))

    def _send_msg(self, data: Any) -> None:
        if self._models:  # shown somewhere; with no view (a test, a script) there is nobody to tell
            super()._send_msg(data)

    def _cleanup(self, root: Any = None) -> None:
        super()._cleanup(root)
        if not self._models:
            self.closed = True
