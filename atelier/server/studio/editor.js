// The mask editor: the image on one canvas, the mask on another above it at the image's own
// resolution (painted opaque, shown translucent by CSS), a brush and an eraser, and undo as a
// stack of mask snapshots. Exported as white (redraw) on black, the API's mask format.

const MASK_COLOUR = [86, 112, 255];   // a quick-mask blue, shown translucent (the Mask opacity slider)
const UNDO_DEPTH = 60;

export class MaskEditor {
  constructor({ stage, inner, imageCanvas, maskCanvas, cursor, onChange }) {
    Object.assign(this, { stage, inner, imageCanvas, maskCanvas, cursor, onChange });
    this.image = this.imageCanvas.getContext("2d");
    this.mask = this.maskCanvas.getContext("2d", { willReadFrequently: true });
    this.size = 8;
    this.erasing = false;
    this.undoStack = [];
    this.scale = 1;
    this.last = null;
    this.loaded = false;
    this._bind();
    new ResizeObserver(() => this.fit()).observe(this.stage);
  }

  load(picture) {
    const { width, height } = picture;
    for (const canvas of [this.imageCanvas, this.maskCanvas]) { canvas.width = width; canvas.height = height; }
    this.image.imageSmoothingEnabled = false;
    this.image.drawImage(picture, 0, 0);
    this.mask.clearRect(0, 0, width, height);
    this.undoStack = [];
    this.loaded = true;
    this.fit();
    this._changed();
  }

  get width() { return this.imageCanvas.width; }
  get height() { return this.imageCanvas.height; }

  // Whole-number magnification where it fits (crisp pixels), else scaled down to the stage.
  fit() {
    if (!this.loaded) return;
    const room = this.stage.getBoundingClientRect();
    const fit = Math.min((room.width - 32) / this.width, (room.height - 32) / this.height);
    this.scale = fit >= 1 ? Math.max(1, Math.floor(fit)) : Math.max(fit, 0.05);
    this.inner.style.width = `${this.width * this.scale}px`;
    this.inner.style.height = `${this.height * this.scale}px`;
    this._sizeCursor();
  }

  setTool(erasing) { this.erasing = erasing; this._changed(); }
  setSize(size) { this.size = Math.max(1, Math.min(64, size)); this._sizeCursor(); this._changed(); }

  snapshot() {
    this.undoStack.push(this.mask.getImageData(0, 0, this.width, this.height));
    if (this.undoStack.length > UNDO_DEPTH) this.undoStack.shift();
  }

  undo() {
    const previous = this.undoStack.pop();
    if (previous) { this.mask.putImageData(previous, 0, 0); this._changed(); }
  }

  clear() { this.snapshot(); this.mask.clearRect(0, 0, this.width, this.height); this._changed(); }

  invert() {
    this.snapshot();
    const data = this.mask.getImageData(0, 0, this.width, this.height);
    for (let i = 0; i < data.data.length; i += 4) {
      const on = data.data[i + 3] < 128;
      data.data.set(on ? [...MASK_COLOUR, 255] : [0, 0, 0, 0], i);
    }
    this.mask.putImageData(data, 0, 0);
    this._changed();
  }

  // A white-on-black mask image (an automatic mask from POST /v1/masks) into the layer, undoable.
  setMask(picture) {
    this.snapshot();
    const scratch = document.createElement("canvas");
    scratch.width = this.width;
    scratch.height = this.height;
    const context = scratch.getContext("2d", { willReadFrequently: true });
    context.imageSmoothingEnabled = false;
    context.drawImage(picture, 0, 0, this.width, this.height);
    const source = context.getImageData(0, 0, this.width, this.height).data;
    const data = this.mask.createImageData(this.width, this.height);
    for (let i = 0; i < source.length; i += 4) {
      if (source[i] >= 128) data.data.set([...MASK_COLOUR, 255], i);
    }
    this.mask.putImageData(data, 0, 0);
    this._changed();
  }

  coverage() {
    if (!this.loaded) return 0;
    const data = this.mask.getImageData(0, 0, this.width, this.height).data;
    let on = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] >= 128) on += 1;
    return on / (this.width * this.height);
  }

  // The mask as base64 PNG: white where painted, black elsewhere.
  exportMask() {
    const out = document.createElement("canvas");
    out.width = this.width;
    out.height = this.height;
    const context = out.getContext("2d");
    const source = this.mask.getImageData(0, 0, this.width, this.height).data;
    const data = context.createImageData(this.width, this.height);
    for (let i = 0; i < source.length; i += 4) {
      const value = source[i + 3] >= 128 ? 255 : 0;
      data.data.set([value, value, value, 255], i);
    }
    context.putImageData(data, 0, 0);
    return out.toDataURL("image/png").split(",", 2)[1];
  }

  _point(event) {
    const box = this.maskCanvas.getBoundingClientRect();
    return [(event.clientX - box.left) / this.scale, (event.clientY - box.top) / this.scale];
  }

  _stroke(from, to) {
    const context = this.mask;
    context.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = `rgb(${MASK_COLOUR.join(",")})`;
    context.lineWidth = this.size;
    context.lineCap = context.lineJoin = "round";
    context.beginPath();
    if (from) {
      context.moveTo(...from);
      context.lineTo(...to);
      context.stroke();
    } else {
      context.arc(to[0], to[1], this.size / 2, 0, Math.PI * 2);
      context.fill();
    }
    context.globalCompositeOperation = "source-over";
  }

  _bind() {
    const canvas = this.maskCanvas;
    canvas.addEventListener("pointerdown", (event) => {
      if (!this.loaded || event.button !== 0 || this.disabled) return;
      canvas.setPointerCapture(event.pointerId);
      this.snapshot();
      this.last = this._point(event);
      this._stroke(null, this.last);
    });
    canvas.addEventListener("pointermove", (event) => {
      this._moveCursor(event);
      if (!this.last) return;
      const point = this._point(event);
      this._stroke(this.last, point);
      this.last = point;
    });
    const end = () => { if (this.last) { this.last = null; this._changed(); } };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("pointerleave", () => { this.cursor.hidden = true; });
    canvas.addEventListener("pointerenter", () => { this.cursor.hidden = !this.loaded; });
  }

  _sizeCursor() {
    const pixels = this.size * this.scale;
    this.cursor.style.width = this.cursor.style.height = `${pixels}px`;
  }

  _moveCursor(event) {
    const box = this.inner.getBoundingClientRect();
    this.cursor.style.transform = `translate(${event.clientX - box.left}px, ${event.clientY - box.top}px)`;
    this.cursor.classList.toggle("erasing", this.erasing);
  }

  _changed() { if (this.onChange) this.onChange(this); }
}
