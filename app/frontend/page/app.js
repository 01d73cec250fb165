// The page: model picker, drawing pad with live prediction, file upload, compare mode.

import { apiKey, listModels, predict } from "./api.js";
import { Pad } from "./draw.js";
import { card, notLoaded, REFUSED } from "./render.js";

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

// The last input is what runs again when the model or compare mode changes: the drawing
// (files: null) or the files last chosen or dropped. Each input, and each re-run of it, gets a
// new number; an answer is shown only while its number is the newest (a late answer to an
// older input is dropped). results.dataset.input says which number the results answer,
// results.dataset.latest the newest, results.dataset.version which drawing (files: none).
let input = { number: 0, files: null };
results.dataset.latest = input.number;

function newInput(files) {
  input = { number: input.number + 1, files };
  results.dataset.latest = input.number;
}

function answered(number, version) {
  results.dataset.input = number;
  if (version === null) delete results.dataset.version;
  else results.dataset.version = version; // what is shown answers this drawing
}

// Each result replaces the last, model by model in compare mode.
async function classify(number, files, version = null) {
  const models = $("compare").checked ? loaded : [select.value];
  const answers = await Promise.allSettled(models.map((m) => predict(m, files)));
  if (number !== input.number) return; // a newer input came meanwhile: this answer is stale
  const cards = [];
  const problems = [];
  answers.forEach((a, i) => {
    if (a.status === "fulfilled") {
      for (const p of a.value.answer.predictions) cards.push(card(models[i], p, a.value.ms));
    } else if (REFUSED[a.reason.problem?.type]) {
      // One image, judged not one digit: an answer to show, not an error.
      cards.push(card(models[i], a.reason.problem, a.reason.ms ?? 0));
    } else {
      problems.push([models[i], a.reason]);
    }
  });
  results.replaceChildren(...cards);
  answered(number, version);
  const denied = problems.find(([, reason]) => reason.needsKey);
  if (denied) askForKey(denied[1].problem);
  else showError(problems.map(([model, reason]) => `${model}: ${reason.message}`).join("\n"));
}

function failed(number, version, e) {
  if (number !== input.number) return;
  showError(e.message);
  answered(number, version);
}

// Live prediction: at most one request in flight; a newer drawing waits for it, then goes.
let inFlight = false;
let pending = false;
let timer = null;

async function sendDrawing() {
  if (input.files) return; // files came since: they are the last input now
  if (inFlight) {
    pending = true;
    return;
  }
  const { number } = input;
  const version = pad.version;
  if (pad.empty) {
    results.replaceChildren();
    showError("");
    answered(number, version);
    return;
  }
  inFlight = true;
  try {
    await classify(number, [["drawing.png", await pad.png()]], version);
  } catch (e) {
    failed(number, version, e);
  } finally {
    inFlight = false;
    if (pending) {
      pending = false;
      sendDrawing();
    }
  }
}

function drawingChanged(strokeEnded) {
  if (input.files) newInput(null); // the drawing is the last input again
  if (!loaded.length || (!strokeEnded && !$("live").checked)) return;
  clearTimeout(timer);
  timer = setTimeout(sendDrawing, strokeEnded ? 0 : 250);
}

async function sendFiles() {
  const { number, files } = input;
  if (!loaded.length) return;
  try {
    await classify(number, files);
  } catch (e) {
    failed(number, null, e);
  }
}

function chooseFiles(fileList) {
  if (!fileList.length) return;
  newInput([...fileList].map((f) => [f.name, f]));
  sendFiles();
}

// The model or compare mode changed: run the last input again, and drop answers still coming
// for the old choice.
function rerun() {
  newInput(input.files);
  if (input.files) sendFiles();
  else drawingChanged(true);
}

const pad = new Pad($("canvas"), drawingChanged);
$("undo").addEventListener("click", () => pad.undo());
$("clear").addEventListener("click", () => pad.clear());
$("compare").addEventListener("change", rerun);
select.addEventListener("change", () => {
  const reason = reasons[select.value];
  showError(reason ? `${select.value} is not loaded: ${reason}` : "");
  if (reason) newInput(input.files);
  else rerun();
});

$("files").addEventListener("change", (e) => {
  chooseFiles(e.target.files);
  e.target.value = ""; // so that choosing the same files again is a change, and runs them again
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  chooseFiles(e.dataTransfer.files);
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
  notLoaded($("unavailable"), models.filter((m) => !m.loaded));
  if (!loaded.length) {
    $("unavailable").open = true;
    showError("No model is loaded: see the reasons above.");
  }
}

function start() {
  loadModels().catch((e) =>
    e.needsKey ? askForKey(e.problem) : showError(`Cannot list the models: ${e.message}`),
  );
}

start();
