// The page: model picker, drawing pad with live prediction, file upload, compare mode.

import { apiKey, listModels, predict } from "./api.js";
import { Pad } from "./draw.js";
import { card } from "./render.js";

const $ = (id) => document.getElementById(id);
const select = $("model");
const results = $("results");
const error = $("error");
let loaded = [];
let reasons = {};

function showError(message) {
  error.textContent = message;
  error.hidden = !message;
}

// A 401: ask for the key, then try again.
function askForKey(problem) {
  $("auth").hidden = false;
  $("key").focus();
  showError(problem.detail);
}

$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey.set($("key").value);
  $("auth").hidden = true;
  showError("");
  start();
});

// Each result replaces the last, model by model in compare mode.
async function classify(files) {
  const models = $("compare").checked ? loaded : [select.value];
  const answers = await Promise.allSettled(models.map((m) => predict(m, files)));
  const cards = [];
  const problems = [];
  answers.forEach((a, i) => {
    if (a.status === "fulfilled") {
      for (const p of a.value.answer.predictions) cards.push(card(models[i], p, a.value.ms));
    } else {
      problems.push([models[i], a.reason]);
    }
  });
  results.replaceChildren(...cards);
  const denied = problems.find(([, reason]) => reason.needsKey);
  if (denied) askForKey(denied[1].problem);
  else showError(problems.map(([model, reason]) => `${model}: ${reason.message}`).join("\n"));
}

// Live prediction: at most one request in flight; a newer drawing waits for it, then goes.
let inFlight = false;
let pending = false;
let timer = null;

async function sendDrawing() {
  if (inFlight) {
    pending = true;
    return;
  }
  const version = pad.version;
  if (pad.empty) {
    results.replaceChildren();
    showError("");
    results.dataset.version = version;
    return;
  }
  inFlight = true;
  try {
    await classify([["drawing.png", await pad.png()]]);
  } catch (e) {
    showError(e.message);
  } finally {
    results.dataset.version = version; // what is shown answers this drawing
    inFlight = false;
    if (pending) {
      pending = false;
      sendDrawing();
    }
  }
}

function drawingChanged(strokeEnded) {
  if (!loaded.length || (!strokeEnded && !$("live").checked)) return;
  clearTimeout(timer);
  timer = setTimeout(sendDrawing, strokeEnded ? 0 : 250);
}

const pad = new Pad($("canvas"), drawingChanged);
$("undo").addEventListener("click", () => pad.undo());
$("clear").addEventListener("click", () => pad.clear());
$("compare").addEventListener("change", () => drawingChanged(true));
select.addEventListener("change", () => {
  const reason = reasons[select.value];
  showError(reason ? `${select.value} is not loaded: ${reason}` : "");
  if (!reason) drawingChanged(true);
});

async function sendFiles(fileList) {
  if (!fileList.length || !loaded.length) return;
  try {
    await classify([...fileList].map((f) => [f.name, f]));
  } catch (e) {
    showError(e.message);
  }
}

$("files").addEventListener("change", (e) => sendFiles(e.target.files));
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  sendFiles(e.dataTransfer.files);
});
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") $("files").click();
});

async function loadModels() {
  const models = await listModels();
  loaded = models.filter((m) => m.loaded).map((m) => m.name);
  reasons = Object.fromEntries(models.filter((m) => !m.loaded).map((m) => [m.name, m.reason]));
  select.replaceChildren(
    ...models.map((m) =>
      Object.assign(document.createElement("option"), {
        value: m.name,
        textContent: m.loaded ? m.name : `${m.name} (not loaded)`,
      }),
    ),
  );
  if (loaded.length) select.value = loaded.includes("mnist_cnn") ? "mnist_cnn" : loaded[0];
  $("unavailable").replaceChildren(
    ...models
      .filter((m) => !m.loaded)
      .map((m) => Object.assign(document.createElement("li"), {
        textContent: `${m.name}: ${m.status}: ${m.reason}`,
      })),
  );
  if (!loaded.length) showError("No model is loaded: see the reasons above.");
}

function start() {
  loadModels().catch((e) =>
    e.needsKey ? askForKey(e.problem) : showError(`Cannot list the models: ${e.message}`),
  );
}

start();
