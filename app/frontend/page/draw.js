// The drawing pad: pointer strokes (mouse, pen, touch) on a white page, undo and clear.

// A pen on paper: about a fifteenth of the page, like MNIST's strokes in their 28 px frame.
const PEN = 1 / 15;

export class Pad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.strokes = [];
    this.version = 0; // counts changes: a result says which drawing it answers
    this.onChange = onChange;
    canvas.addEventListener("pointerdown", (e) => this.start(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const end of ["pointerup", "pointercancel", "pointerleave"]) {
      canvas.addEventListener(end, () => this.end());
    }
    this.redraw();
  }

  point(e) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((e.clientX - box.left) * this.canvas.width) / box.width,
      ((e.clientY - box.top) * this.canvas.height) / box.height,
    ];
  }

  start(e) {
    this.canvas.setPointerCapture(e.pointerId);
    this.current = [this.point(e)];
    this.strokes.push(this.current);
    this.redraw();
  }

  move(e) {
    if (!this.current) return;
    this.current.push(this.point(e));
    this.changed(false);
  }

  end() {
    if (!this.current) return;
    this.current = null;
    this.changed(true);
  }

  // Undo and clear change nothing on an empty page (so they leave files' results alone).
  undo() {
    if (this.empty) return;
    this.strokes.pop();
    this.changed(true);
  }

  clear() {
    if (this.empty) return;
    this.strokes = [];
    this.changed(true);
  }

  changed(strokeEnded) {
    this.version += 1;
    this.canvas.dataset.version = this.version;
    this.redraw();
    this.onChange(strokeEnded);
  }

  get empty() {
    return this.strokes.length === 0;
  }

  redraw() {
    const { ctx, canvas } = this;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = canvas.width * PEN;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const stroke of this.strokes) {
      ctx.beginPath();
      ctx.moveTo(...stroke[0]);
      for (const p of stroke.slice(1)) ctx.lineTo(...p);
      if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.1, stroke[0][1]); // a dot
      ctx.stroke();
    }
  }

  png() {
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }
}
