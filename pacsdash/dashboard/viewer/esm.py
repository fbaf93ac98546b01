"""Browser code of :class:`~pacsdash.dashboard.viewer.canvas.FrameCanvas`.

An inline ES module (no imports, no CDN: works offline) that keeps a cache of
frames keyed by series-wide index, applies the VOI window to the modality
values on a <canvas> (PS3.3 C.11.2.1.2 linear, C.11.2.1.3 linear-exact and
sigmoid), and asks Python for the frames it lacks:

* ``{type: "need", series_key, indices, evicted, reset}`` to Python: the
  frames missing, most urgent first (the current one, then ahead in the
  direction of motion, then the rest of the series nearest first, within the
  cache budget); frames dropped from the cache since the last message; and
  ``reset`` from a new view, whose cache is empty;
* ``{type: "frame", series_key, index, ...metadata, pixels}`` from Python:
  one frame, ``pixels`` raw little-endian bytes (a binary websocket buffer);
* ``{type: "error", series_key, index, message}`` and ``{type: "reset"}``.

Window changes, zoom and pan never go back to Python for pixels.
"""

FRAME_CANVAS_CSS = """
:host { display: block; }
.pd-viewer { position: relative; width: 100%; height: 100%; min-height: 64px; background: #000;
  overflow: hidden; outline: none; user-select: none; -webkit-user-select: none; touch-action: none; }
.pd-viewer:focus-visible { box-shadow: inset 0 0 0 2px #4a90d9; }
.pd-canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; cursor: crosshair; }
.pd-overlay { position: absolute; color: #e8e8e8; font: 12px/1.35 system-ui, sans-serif;
  text-shadow: 0 0 3px #000, 0 0 2px #000; pointer-events: none; white-space: pre; }
.pd-tl { top: 6px; left: 8px; } .pd-tr { top: 6px; right: 8px; text-align: right; }
.pd-bl { bottom: 6px; left: 8px; } .pd-msg { top: 50%; left: 0; right: 0; text-align: center; white-space: normal; }
.pd-tools { position: absolute; bottom: 6px; right: 6px; display: flex; gap: 4px; }
.pd-tools button { background: rgba(40,40,40,0.8); color: #eee; border: 1px solid #666; border-radius: 4px;
  min-width: 28px; height: 26px; font-size: 13px; cursor: pointer; padding: 0 6px; }
.pd-tools button:hover { background: rgba(80,80,80,0.9); }
"""

FRAME_CANVAS_ESM = r"""
const TYPED = {uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, float32: Float32Array}
const LUT_OFFSET = {uint8: 0, int16: 32768, uint16: 0}
const LUT_SIZE = {uint8: 256, int16: 65536, uint16: 65536}
const IN_FLIGHT_RESEND_MS = 3000

function toArrayBuffer(p) {
  if (p instanceof ArrayBuffer) return p
  if (ArrayBuffer.isView(p)) return p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength)
  if (typeof p === "string") {
    const bin = atob(p), out = new Uint8Array(bin.length)
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
    return out.buffer
  }
  throw new Error("pixels are neither bytes nor base64")
}

// PS3.3 C.11.2.1.2.1 (linear), C.11.2.1.3.1 (sigmoid), C.11.2.1.3.2 (linear-exact), output 0..255
function voi(x, c, w, fn) {
  if (fn === "sigmoid") return 255 / (1 + Math.exp(-4 * (x - c) / w))
  if (fn === "linear-exact") {
    if (x <= c - w / 2) return 0
    if (x > c + w / 2) return 255
    return ((x - c) / w + 0.5) * 255
  }
  const c1 = c - 0.5, w1 = w - 1
  if (w1 <= 0) return x <= c1 ? 0 : 255
  if (x <= c1 - w1 / 2) return 0
  if (x > c1 + w1 / 2) return 255
  return ((x - c1) / w1 + 0.5) * 255
}

function grey(g) { return (0xFF000000 | (g << 16) | (g << 8) | g) >>> 0 }

function throttle(fn, ms) {
  let last = 0, timer = null
  const run = () => { last = performance.now(); timer = null; fn() }
  const call = () => {
    const wait = ms - (performance.now() - last)
    if (wait <= 0) { if (timer) { clearTimeout(timer) } run() }
    else if (!timer) timer = setTimeout(run, wait)
  }
  call.flush = () => { if (timer) { clearTimeout(timer) } run() }
  call.cancel = () => { if (timer) clearTimeout(timer); timer = null }
  return call
}

function el(tag, cls, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text != null) e.textContent = text
  return e
}

function fmt(v, isFloat) {
  if (!Number.isFinite(v)) return String(v)
  if (!isFloat) return String(Math.round(v))
  const a = Math.abs(v)
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toPrecision(3)
}

export function render({ model }) {
  const root = el("div", "pd-viewer")
  root.tabIndex = 0
  const canvas = el("canvas", "pd-canvas")
  const ctx = canvas.getContext("2d")
  const image = document.createElement("canvas")
  const ictx = image.getContext("2d")
  const tl = el("div", "pd-overlay pd-tl"), tr = el("div", "pd-overlay pd-tr")
  const bl = el("div", "pd-overlay pd-bl"), msg = el("div", "pd-overlay pd-msg")
  const tools = el("div", "pd-tools")
  const button = (label, title, action) => {
    const b = el("button", null, label); b.title = title; b.type = "button"
    b.addEventListener("click", (e) => { e.stopPropagation(); action(); root.focus({preventScroll: true}) })
    b.addEventListener("mousedown", (e) => e.stopPropagation())
    tools.append(b); return b
  }
  root.append(canvas, tl, tr, bl, msg, tools)

  const cache = new Map()          // series-wide index -> {index, meta, data}
  const errors = new Map()         // index -> message
  let cacheBytes = 0
  let index = model.frame_index
  let current = null               // frame on screen (may be another index while loading)
  let center = model.window_center, width = model.window_width, fn = model.voi_function || "linear"
  let zoom = 1, panX = 0, panY = 0, direction = 1
  let imgData = null, lut = null, lutKey = null
  let needPaint = true, rafPending = false
  let pointer = null, drag = null, wheelAcc = 0
  let lastWish = null, lastWishAt = 0, playTimer = null
  let evicted = [], fresh = true   // tell Python what it must send again: evicted frames, or all (new view)
  let dpr = window.devicePixelRatio || 1

  const isFloat = () => current != null && (current.meta.dtype === "float32")
  const budget = () => Math.max(16, model.cache_megabytes || 256) * 1024 * 1024

  // ---- sync with Python ---------------------------------------------------
  let pushing = false               // our own model changes: not echoed into the view
  const syncWindow = throttle(() => {
    pushing = true
    try {
      if (model.window_center !== center) model.window_center = center
      if (model.window_width !== width) model.window_width = width
      if (model.voi_function !== fn) model.voi_function = fn
    } finally { pushing = false }
  }, 100)
  const syncIndex = throttle(() => {
    if (model.frame_index !== index) model.frame_index = index
  }, 100)
  const syncDrawn = throttle(() => {
    if (current && model.drawn_index !== current.index) model.drawn_index = current.index
  }, 100)

  function wishlist() {
    const n = model.frame_count
    if (!n || !model.series_key) return []
    const per = current ? Math.max(current.meta.nbytes, 1) : 512 * 1024
    const limit = Math.max(1, Math.min(n, Math.floor(budget() / per)))
    const prefetch = Math.max(0, model.prefetch)
    const seen = new Set(), list = []
    const add = (i) => {
      if (model.playing) i = ((i % n) + n) % n
      if (i >= 0 && i < n && !seen.has(i) && seen.size < limit) { seen.add(i); list.push(i) }
    }
    add(index)
    const ahead = model.playing ? 2 * prefetch : prefetch
    for (let d = 1; d <= ahead; d++) add(index + direction * d)
    for (let d = 1; d <= Math.ceil(prefetch / 2); d++) add(index - direction * d)
    for (let d = 1; d < n && seen.size < limit; d++) { add(index + direction * d); add(index - direction * d) }
    return list.filter((i) => !cache.has(i) && !errors.has(i)).slice(0, 512)
  }
  function requestNow() {
    if (!model.series_key) return
    const wish = wishlist()
    const text = wish.join(",") + "|" + model.series_key
    const now = performance.now()
    if (text === lastWish && !evicted.length && (wish.length === 0 || now - lastWishAt < IN_FLIGHT_RESEND_MS)) return
    lastWish = text; lastWishAt = now
    model.send_msg({type: "need", series_key: model.series_key, indices: wish, evicted, reset: fresh})
    evicted = []; fresh = false
  }
  const requestSoon = throttle(requestNow, 60)
  const resendTimer = setInterval(() => { if (wishlist().length) requestNow() }, IN_FLIGHT_RESEND_MS)

  function evict() {
    while (cacheBytes > budget() && cache.size > 1) {
      let worst = null, far = -1
      for (const i of cache.keys()) {
        const d = Math.abs(i - index)
        if (i !== index && d > far) { far = d; worst = i }
      }
      if (worst == null) break
      cacheBytes -= cache.get(worst).meta.nbytes
      cache.delete(worst)
      evicted.push(worst)
    }
  }

  function accept(m) {
    const Typed = TYPED[m.dtype]
    if (!Typed) throw new Error(`unknown sample type ${m.dtype}`)
    const data = new Typed(toArrayBuffer(m.pixels))
    const meta = Object.assign({}, m); delete meta.pixels
    const frame = {index: m.index, meta, data}
    if (cache.has(m.index)) cacheBytes -= cache.get(m.index).meta.nbytes
    cache.set(m.index, frame); cacheBytes += meta.nbytes
    errors.delete(m.index)
    evict()
    root.dataset.cached = String(cache.size)
    return frame
  }

  model.on("msg:custom", (m) => {
    if (!m || typeof m !== "object") return
    if (m.type === "reset") { resetView(m.window !== false); return }
    if (m.series_key !== model.series_key) return
    if (m.type === "frame") {
      const frame = accept(m)
      if (m.index === index) show(frame)
    } else if (m.type === "error") {
      errors.set(m.index, m.message || "cannot decode")
      if (m.index === index) { current = null; redraw(true) }
    }
  })

  // ---- drawing ------------------------------------------------------------
  function paintImage() {
    const f = current
    if (!f) return
    const {rows, columns} = f.meta
    if (image.width !== columns || image.height !== rows) { image.width = columns; image.height = rows }
    if (!imgData || imgData.width !== columns || imgData.height !== rows) imgData = ictx.createImageData(columns, rows)
    const out = new Uint32Array(imgData.data.buffer)
    const d = f.data, n = rows * columns
    if (f.meta.samples === 3) {
      for (let i = 0, j = 0; i < n; i++, j += 3) out[i] = (0xFF000000 | (d[j + 2] << 16) | (d[j + 1] << 8) | d[j]) >>> 0
    } else {
      const inv = !!f.meta.invert, w = Math.max(width, 1e-9)
      const size = LUT_SIZE[f.meta.dtype]
      if (size) {
        const off = LUT_OFFSET[f.meta.dtype]
        const key = `${f.meta.dtype}|${center}|${w}|${fn}|${inv}`
        if (key !== lutKey) {
          lut = new Uint32Array(size)
          for (let v = 0; v < size; v++) {
            let g = Math.round(voi(v - off, center, w, fn))
            if (inv) g = 255 - g
            lut[v] = grey(g)
          }
          lutKey = key
        }
        for (let i = 0; i < n; i++) out[i] = lut[d[i] + off]
      } else {
        for (let i = 0; i < n; i++) {
          const x = d[i]
          let g = Number.isFinite(x) ? Math.round(voi(x, center, w, fn)) : 0
          if (inv) g = 255 - g
          out[i] = grey(g)
        }
      }
    }
    ictx.putImageData(imgData, 0, 0)
  }

  function transform() {
    const f = current, cw = canvas.width, ch = canvas.height
    const {rows, columns} = f.meta
    const sp = f.meta.pixel_spacing
    const aspect = sp && sp[0] > 0 && sp[1] > 0 ? sp[0] / sp[1] : 1
    const fit = Math.min(cw / columns, ch / (rows * aspect))
    const sx = fit * zoom, sy = fit * zoom * aspect
    return {sx, sy, dx: (cw - columns * sx) / 2 + panX, dy: (ch - rows * sy) / 2 + panY}
  }

  function present() {
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.fillStyle = "#000"
    ctx.fillRect(0, 0, canvas.width, canvas.height)
    if (current) {
      const t = transform()
      ctx.imageSmoothingEnabled = t.sx < 4
      ctx.imageSmoothingQuality = "high"
      ctx.drawImage(image, t.dx, t.dy, current.meta.columns * t.sx, current.meta.rows * t.sy)
      canvas.dataset.frameIndex = String(current.index)
      canvas.dataset.windowCenter = String(center)
      canvas.dataset.windowWidth = String(width)
      root.dataset.drawn = String((Number(root.dataset.drawn) || 0) + 1)
      syncDrawn()
    }
    overlay()
  }

  function redraw(paint) {
    needPaint = needPaint || paint
    if (rafPending) return
    rafPending = true
    requestAnimationFrame(() => {
      rafPending = false
      if (needPaint) { paintImage(); needPaint = false }
      present()
    })
  }

  function overlay() {
    const n = model.frame_count
    const lines = []
    if (n) lines.push(`Im ${index + 1} / ${n}`)
    if (current && current.meta.samples === 1) {
      const decimals = (v) => isFloat() || !Number.isInteger(v)
      lines.push(`W ${fmt(width, decimals(width))}  L ${fmt(center, decimals(center))}`)
    }
    if (current && current.index !== index) lines.push("loading…")
    tl.textContent = lines.join("\n")
    const right = []
    if (current) {
      if (current.meta.modality) right.push(current.meta.modality)
      right.push(`${current.meta.columns} × ${current.meta.rows}`)
      right.push(`zoom ${(zoom).toFixed(2)}×`)
      if (current.meta.invert) right.push("MONOCHROME1")
    }
    tr.textContent = right.join("\n")
    bl.textContent = pointerText()
    const err = errors.get(index)
    msg.textContent = err ? err : (!current && n ? "loading…" : (!n ? (model.message || "no image") : ""))
    play.style.display = n > 1 ? "" : "none"
    play.textContent = model.playing ? "❚❚" : "▶"
  }

  function pointerText() {
    if (!pointer || !current) return ""
    const t = transform()
    const x = Math.floor((pointer.x * dpr - t.dx) / t.sx)
    const y = Math.floor((pointer.y * dpr - t.dy) / t.sy)
    const {rows, columns, samples, units} = current.meta
    if (x < 0 || y < 0 || x >= columns || y >= rows) return ""
    const i = y * columns + x
    if (samples === 3) {
      const d = current.data
      return `(${x}, ${y})  R ${d[3 * i]} G ${d[3 * i + 1]} B ${d[3 * i + 2]}`
    }
    const v = current.data[i]
    return `(${x}, ${y})  ${fmt(v, isFloat())}${units ? " " + units : ""}`
  }

  // ---- state changes --------------------------------------------------------
  function show(frame) {
    const changed = current !== frame
    current = frame
    redraw(changed)
  }

  function goTo(i, fromModel = false) {
    const n = model.frame_count
    if (!n) { index = 0; current = null; redraw(false); return }
    i = Math.max(0, Math.min(n - 1, Math.round(i)))
    if (i !== index) direction = i > index ? 1 : -1
    index = i
    if (!fromModel) syncIndex()
    const frame = cache.get(i)
    if (frame) show(frame); else redraw(false)
    if (frame) requestSoon(); else requestNow()
  }

  function step(delta) {
    const n = model.frame_count
    if (!n) return
    goTo(index + delta)
  }

  function setWindow(c, w, f, sync = true) {
    const integral = current && current.meta.samples === 1 && !isFloat()
    if (integral) { c = Math.round(c); w = Math.round(w) }
    const minimum = (f || fn) === "linear" ? 1 : 1e-6
    center = c; width = Math.max(w, minimum)
    if (f) fn = f
    if (sync) syncWindow()
    redraw(true)
  }

  function applyPreset(n) {
    const p = (model.presets || [])[n]
    if (!p) return
    setWindow(p.center, p.width, p.function || "linear")
    syncWindow.flush()
  }

  function resetView(window_ = true) {
    zoom = 1; panX = 0; panY = 0
    if (window_ && current && current.meta.samples === 1) {
      const w = current.meta.default_window
      setWindow(w.center, w.width, w.function || "linear")
      syncWindow.flush()
    }
    redraw(false)
  }

  function zoomAt(px, py, factor) {
    if (!current) return
    const t = transform()
    const u = (px - t.dx) / t.sx, v = (py - t.dy) / t.sy
    zoom = Math.max(0.1, Math.min(40, zoom * factor))
    const t2 = transform()
    panX += px - (t2.dx + u * t2.sx)
    panY += py - (t2.dy + v * t2.sy)
    redraw(false)
  }

  function setPlaying() {
    if (playTimer) { clearInterval(playTimer); playTimer = null }
    if (model.playing && model.frame_count > 1) {
      const fps = Math.max(0.5, Math.min(60, model.fps || 10))
      direction = 1
      playTimer = setInterval(() => {
        const n = model.frame_count
        if (n < 2) return
        const next = (index + 1) % n
        if (cache.has(next)) goTo(next); else requestNow()
      }, 1000 / fps)
    }
    overlay()
  }

  // ---- input -----------------------------------------------------------------
  const play = button("▶", "Play / pause (space)", () => { model.playing = !model.playing })
  button("−", "Zoom out (-)", () => zoomAt(canvas.width / 2, canvas.height / 2, 1 / 1.25))
  button("+", "Zoom in (+)", () => zoomAt(canvas.width / 2, canvas.height / 2, 1.25))
  button("fit", "Fit to window (0)", () => { zoom = 1; panX = 0; panY = 0; redraw(false) })
  button("reset", "Reset window and zoom (r)", () => resetView(true))

  canvas.addEventListener("contextmenu", (e) => e.preventDefault())
  canvas.addEventListener("pointerdown", (e) => {
    root.focus({preventScroll: true})
    const pan = e.button === 1 || e.button === 2 || (e.button === 0 && (e.shiftKey || e.ctrlKey || e.metaKey))
    drag = {mode: pan ? "pan" : "window", x: e.clientX, y: e.clientY, center, width, panX, panY, id: e.pointerId}
    canvas.setPointerCapture(e.pointerId)
    e.preventDefault()
  })
  canvas.addEventListener("pointermove", (e) => {
    const r = canvas.getBoundingClientRect()
    pointer = {x: e.clientX - r.left, y: e.clientY - r.top}
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y
      if (drag.mode === "pan") {
        panX = drag.panX + dx * dpr; panY = drag.panY + dy * dpr
        redraw(false)
      } else if (current && current.meta.samples === 1) {
        const range = Math.max(current.meta.maximum - current.meta.minimum, isFloat() ? 1e-6 : 1)
        const k = isFloat() ? range / 1024 : Math.max(range / 1024, 1)
        setWindow(drag.center + dy * k, drag.width + dx * k)
      }
    } else {
      bl.textContent = pointerText()
    }
  })
  const endDrag = (e) => {
    if (!drag) return
    if (drag.mode === "window") syncWindow.flush()
    try { canvas.releasePointerCapture(drag.id) } catch (err) {}
    drag = null
  }
  canvas.addEventListener("pointerup", endDrag)
  canvas.addEventListener("pointercancel", endDrag)
  canvas.addEventListener("pointerleave", () => { if (!drag) { pointer = null; bl.textContent = "" } })
  canvas.addEventListener("dblclick", () => { zoom = 1; panX = 0; panY = 0; redraw(false) })
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault()
    const r = canvas.getBoundingClientRect()
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) {
      zoomAt((e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr, Math.exp(-(e.deltaY || e.deltaX) * 0.0015))
      return
    }
    wheelAcc += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaY
    if (Math.abs(wheelAcc) >= 40) { step(Math.sign(wheelAcc)); wheelAcc = 0 }
  }, {passive: false})

  root.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return
    const n = model.frame_count
    let handled = true
    switch (e.key) {
      case "ArrowDown": case "ArrowRight": step(1); break
      case "ArrowUp": case "ArrowLeft": step(-1); break
      case "PageDown": step(10); break
      case "PageUp": step(-10); break
      case "Home": goTo(0); break
      case "End": goTo(n - 1); break
      case "r": case "R": resetView(true); break
      case " ": case "p": model.playing = !model.playing; break
      case "+": case "=": zoomAt(canvas.width / 2, canvas.height / 2, 1.25); break
      case "-": case "_": zoomAt(canvas.width / 2, canvas.height / 2, 1 / 1.25); break
      case "0": zoom = 1; panX = 0; panY = 0; redraw(false); break
      default:
        if (e.key >= "1" && e.key <= "9") applyPreset(Number(e.key) - 1)
        else handled = false
    }
    if (handled) e.preventDefault()
  })

  // ---- model changes from Python -------------------------------------------
  let reconcilePending = false
  function reconcile() {
    if (reconcilePending) return
    reconcilePending = true
    queueMicrotask(() => {
      reconcilePending = false
      goTo(model.frame_index, true)
    })
  }
  model.on("series_key", () => {
    cache.clear(); errors.clear(); cacheBytes = 0; current = null; lastWish = null; evicted = []
    root.dataset.cached = "0"
    zoom = 1; panX = 0; panY = 0
    reconcile()
  })
  model.on("frame_count", reconcile)
  model.on("frame_index", () => { if (model.frame_index !== index) reconcile() })
  model.on(["window_center", "window_width", "voi_function"], () => {
    if (drag || pushing) return
    if (model.window_center !== center || model.window_width !== width || model.voi_function !== fn) {
      setWindow(model.window_center, model.window_width, model.voi_function, false)
    }
  })
  model.on("playing", setPlaying)
  model.on(["fps"], setPlaying)
  model.on(["message", "presets"], () => overlay())
  model.on("remove", () => {
    clearInterval(resendTimer)
    if (playTimer) clearInterval(playTimer)
    observer.disconnect()
  })

  const observer = new ResizeObserver(() => {
    dpr = window.devicePixelRatio || 1
    const w = Math.max(1, Math.round(root.clientWidth * dpr)), h = Math.max(1, Math.round(root.clientHeight * dpr))
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; redraw(false) }
  })
  observer.observe(root)
  setPlaying()
  reconcile()
  return root
}
"""
