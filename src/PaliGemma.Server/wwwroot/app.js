// The page of 'paligemma serve': no framework, no build step. It talks to /v1/paligemma/generate
// (streamed), which returns the same object as 'paligemma run --json', boxes already in pixels.
"use strict";

const $ = (id) => document.getElementById(id);
const palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324"];
const tasks = {
  caption: { prompt: (l) => `caption ${l}`, lang: true },
  describe: { prompt: (l) => `describe ${l}`, lang: true },
  ocr: { prompt: () => "ocr" },
  answer: { prompt: (l, s) => `answer ${l} ${s}`, lang: true, subject: "Question", placeholder: "what is in the picture?" },
  detect: { prompt: (l, s) => `detect ${s}`, subject: "Objects", placeholder: "cat ; dog" },
  segment: { prompt: (l, s) => `segment ${s}`, subject: "Object", placeholder: "cat" },
  custom: { prompt: null },
};

let file = null;
let objects = [];
let controller = null;

function key() { return sessionStorage.getItem("paligemma-key") || ""; }
function headers() { return key() ? { Authorization: `Bearer ${key()}` } : {}; }
function setStatus(text, state = "idle") { const s = $("status"); s.textContent = text; s.dataset.state = state; }
function task() { return document.querySelector("input[name=task]:checked").value; }

function composePrompt() {
  const t = tasks[task()];
  $("subject-box").hidden = !t.subject;
  $("lang-box").hidden = !t.lang;
  if (t.subject) { $("subject-label").textContent = t.subject; $("subject").placeholder = t.placeholder; }
  if (t.prompt) { $("prompt").value = t.prompt($("lang").value, $("subject").value.trim() || t.placeholder); }
  $("prompt").readOnly = !!t.prompt;
}

function choose(f) {
  if (!f) return;
  file = f;
  const img = $("picture");
  img.onload = () => {
    $("picture-info").textContent = `${f.name} · ${img.naturalWidth} × ${img.naturalHeight}`;
    fit();
    draw();
  };
  img.src = URL.createObjectURL(f);
  $("stage").hidden = false;
  $("drop-hint").hidden = true;
  $("run").disabled = false;
  objects = [];
  $("objects").replaceChildren();
  setStatus("Ready");
}

// The picture as large as the panel allows, aspect kept: a 224-pixel picture is scaled up (up to 3x) so its
// boxes can be read, a photo is scaled down. The canvas covers the img element exactly, so the size is set on it.
function fit() {
  const img = $("picture");
  if (!img.naturalWidth) return;
  const room = $("drop").clientWidth - 24, tall = Math.max(240, window.innerHeight * 0.7);
  const scale = Math.min(room / img.naturalWidth, tall / img.naturalHeight, 3);
  img.style.width = `${Math.max(1, Math.floor(img.naturalWidth * scale))}px`;
  img.style.height = `${Math.max(1, Math.floor(img.naturalHeight * scale))}px`;
}

function draw() {
  const img = $("picture"), canvas = $("overlay");
  if (!img.naturalWidth) return;
  const scale = window.devicePixelRatio || 1;
  canvas.width = Math.round(img.clientWidth * scale);
  canvas.height = Math.round(img.clientHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const sx = canvas.width / img.naturalWidth, sy = canvas.height / img.naturalHeight;
  const colours = new Map();
  let drawn = 0;
  for (const o of objects) {
    if (!colours.has(o.label)) colours.set(o.label, palette[colours.size % palette.length]);
    if (!o.valid) continue;
    const colour = colours.get(o.label);
    const [x1, y1, x2, y2] = o.box;
    const x = x1 * sx, y = y1 * sy, w = (x2 - x1) * sx, h = (y2 - y1) * sy;
    if (o.mask) drawMask(ctx, o.mask, o.box, x, y, w, h, colour);
    ctx.lineWidth = 3 * scale;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const text = o.label || "?";
    ctx.font = `${600} ${14 * scale}px system-ui, sans-serif`;
    const tw = ctx.measureText(text).width + 10 * scale, th = 20 * scale;
    const ty = y >= th ? y - th : y;
    ctx.fillStyle = colour;
    ctx.fillRect(x - ctx.lineWidth / 2, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 5 * scale - ctx.lineWidth / 2, ty + 15 * scale);
    drawn++;
  }
  canvas.dataset.boxes = String(drawn);
  const list = $("objects");
  list.replaceChildren(...objects.map((o) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colours.get(o.label);
    const label = document.createElement("span");
    label.textContent = o.label || "(no label)";
    const box = document.createElement("code");
    box.textContent = `[${o.box.join(", ")}]${o.valid ? "" : " invalid, not drawn"}${o.mask ? ` mask ${o.mask_pixels} px` : o.seg ? " (mask codes; the server has no --vae)" : ""}`;
    li.append(sw, label, box);
    return li;
  }));
}

// A mask as the server sends it: box_mask, base64 of the box's 8-bit soft mask (box height rows of box width bytes).
function drawMask(ctx, mask, box, x, y, w, h, colour) {
  const width = box[2] - box[0], height = box[3] - box[1];
  if (!mask.box_mask || width <= 0 || height <= 0) return;
  const bytes = Uint8Array.from(atob(mask.box_mask), (c) => c.charCodeAt(0));
  const tile = document.createElement("canvas");
  tile.width = width; tile.height = height;
  const tctx = tile.getContext("2d");
  const image = tctx.createImageData(width, height);
  const r = parseInt(colour.slice(1, 3), 16), g = parseInt(colour.slice(3, 5), 16), b = parseInt(colour.slice(5, 7), 16);
  for (let i = 0; i < bytes.length && i < width * height; i++) {
    image.data[i * 4] = r; image.data[i * 4 + 1] = g; image.data[i * 4 + 2] = b; image.data[i * 4 + 3] = bytes[i] * 0.55;
  }
  tctx.putImageData(image, 0, 0);
  ctx.drawImage(tile, x, y, w, h);
}

async function run() {
  if (!file) return;
  controller = new AbortController();
  $("run").disabled = true; $("stop").hidden = false;
  $("answer").textContent = ""; $("answer").dataset.tokens = "0"; $("timings").textContent = "";
  objects = []; draw();
  setStatus("Waiting for the model…", "running");
  const form = new FormData();
  form.append("image", file);
  form.append("prompt", $("prompt").value);
  form.append("max_tokens", $("max-tokens").value || "64");
  form.append("stream", "true");
  try {
    const response = await fetch("v1/paligemma/generate", { method: "POST", body: form, headers: headers(), signal: controller.signal });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      if (response.status === 401) { $("key-box").hidden = false; $("key").focus(); }
      throw new Error(body?.error?.message || `HTTP ${response.status}`);
    }
    setStatus("Generating…", "running");
    await readEvents(response.body, onEvent);
  } catch (e) {
    if (e.name === "AbortError") setStatus("Stopped");
    else setStatus(e.message, "error");
  } finally {
    $("run").disabled = false; $("stop").hidden = true; controller = null;
  }
}

function onEvent(name, data) {
  const payload = JSON.parse(data);
  if (name === "token") {
    const answer = $("answer");
    answer.textContent += payload.text;
    answer.dataset.tokens = String(Number(answer.dataset.tokens || 0) + 1);
  } else if (name === "result") {
    $("answer").dataset.streamed = $("answer").textContent;
    $("answer").textContent = payload.text;
    objects = payload.objects;
    draw();
    const t = payload.timings;
    $("timings").textContent = `${payload.tokens.length} tokens (${payload.stop_reason}) · prefix ${payload.prompt_tokens} tokens · image ${t.image_encode_ms} ms · prefill ${t.prefill_ms} ms · ${t.decode_tokens_per_s} tokens/s`;
    setStatus("Done", "done");
  } else if (name === "error") {
    throw new Error(payload.error.message);
  }
}

// Server-sent events over fetch (EventSource cannot POST): "event: NAME\ndata: JSON\n\n".
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) handle(name, data);
    }
  }
}

async function loadModel() {
  const response = await fetch("v1/models", { headers: headers() });
  if (response.status === 401) { $("key-box").hidden = false; $("model").textContent = "API key needed"; return; }
  const models = await response.json();
  $("model").textContent = models.data[0].id;
}

window.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => choose(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0]); });
  document.querySelectorAll("input[name=task]").forEach((r) => r.addEventListener("change", composePrompt));
  $("subject").addEventListener("input", composePrompt);
  $("lang").addEventListener("change", composePrompt);
  $("run").addEventListener("click", run);
  $("stop").addEventListener("click", () => controller?.abort());
  $("key").value = key();
  $("key").addEventListener("change", () => { sessionStorage.setItem("paligemma-key", $("key").value); loadModel(); });
  window.addEventListener("resize", () => { fit(); draw(); });
  composePrompt();
  loadModel();
});
