// What the page renders: result cards (per image, the label, the top-k bars, the latency and
// the digit the model saw) and the one line on the models that are not loaded.

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function bars(topK) {
  return el(
    "ul",
    { className: "bars" },
    ...topK.map((t) =>
      el(
        "li",
        {},
        el("span", { textContent: t.label }),
        el("span", { className: "bar", style: `width: ${(100 * t.probability).toFixed(1)}%` }),
        el("span", { className: "p", textContent: `${(100 * t.probability).toFixed(1)}%` }),
      ),
    ),
  );
}

// An image the model judged not to be one digit: what it is instead, and its guess all the same.
export const REFUSED = {
  "/problems/not-a-digit": "not a digit",
  "/problems/several-digits": "several digits",
};

const percent = (p) => `${(100 * p).toFixed(0)}%`;

function refused(title, meta, problem) {
  const guess = el("span", {
    className: "label guess",
    textContent: problem.label,
    title: "the model's best guess among the digits, all the same",
  });
  const verdict = el("span", { className: "verdict", textContent: REFUSED[problem.type] });
  const why = el("p", {
    className: "meta",
    textContent: `best guess ${problem.label} at ${percent(problem.confidence)}; ` +
      `${percent(problem.score)} sure it is not one digit`,
  });
  const result = el("article", { className: "card refused" }, title, meta,
    el("div", { className: "top" }, verdict, guess), why);
  result.dataset.refused = problem.type.split("/").pop();
  result.dataset.label = problem.label;
  return result;
}

export function card(model, prediction, ms) {
  const title = el("h2", { textContent: `${model}: ${prediction.filename}` });
  const meta = el("p", { className: "meta", textContent: `${ms.toFixed(0)} ms` });
  if (REFUSED[prediction.type]) return refused(title, meta, prediction);
  if (prediction.type) {
    // An image of the request that could not be used: its problem stands in its place.
    return el("article", { className: "card" }, title, meta,
      el("p", { className: "problem", textContent: prediction.detail }));
  }
  const seen = el("img", {
    src: `data:image/png;base64,${prediction.digit}`,
    alt: "the 28x28 digit the model saw",
    title: "the 28x28 digit the model saw",
  });
  const top = el("div", { className: "top" },
    el("span", { className: "label", textContent: prediction.label }), seen);
  const result = el("article", { className: "card" }, title, meta, top, bars(prediction.top_k));
  result.dataset.label = prediction.label;
  return result;
}

// The zoo's big nets take 224x224 inputs; their checkpoints are trained where a GPU is at hand.
const FAMILY = { alexnet: "AlexNet", vgg: "VGG" };

function needGpu(models) {
  const big = models.filter((m) => m.input.height >= 224 && m.input.width >= 224);
  const names = [...new Set(big.map((m) => m.name.replace(/\d+$/, "")))];
  return names.map((f) => FAMILY[f] || f);
}

// models: those of GET /models that are not loaded. One short line (a phone's width) that opens
// to each one's reason.
export function notLoaded(box, models) {
  const n = models.length;
  const gpu = needGpu(models);
  box.hidden = !n;
  box.querySelector("summary").textContent = gpu.length
    ? `${n} not loaded: ${gpu.join(", ")} need${gpu.length > 1 ? "" : "s"} a GPU to train`
    : `${n} model${n === 1 ? "" : "s"} not loaded \u2014 why?`;
  box.querySelector("ul").replaceChildren(
    ...models.map((m) => el("li", { textContent: `${m.name}: ${m.status}: ${m.reason}` })),
  );
}
