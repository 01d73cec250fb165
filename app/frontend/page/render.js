// Result cards: per image, the label, the top-k bars, the latency and the digit the model saw.

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

export function card(model, prediction, ms) {
  const title = el("h2", { textContent: `${model}: ${prediction.filename}` });
  const meta = el("p", { className: "meta", textContent: `${ms.toFixed(0)} ms` });
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
