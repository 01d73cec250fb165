// The service's API, relative to the page (so a path prefix works too).

export class ProblemError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || "request failed");
    this.problem = problem;
  }

  get needsKey() {
    return this.problem.status === 401;
  }
}

// The API key, when the service asks for one: this tab only (sessionStorage), never sent elsewhere.
const KEY = "zoo-api-key";
export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
};

function authorised(init = {}) {
  const key = apiKey.get();
  return key ? { ...init, headers: { Authorization: `Bearer ${key}` } } : init;
}

async function json(response) {
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) throw new ProblemError({ status: response.status, ...body });
  return body;
}

export async function listModels() {
  return (await json(await fetch("models", authorised()))).models;
}

// files: [[name, Blob]]. Resolves to {answer, ms}; rejects with a ProblemError.
export async function predict(model, files) {
  const form = new FormData();
  for (const [name, blob] of files) form.append("files", blob, name);
  const started = performance.now();
  const url = `predict/${encodeURIComponent(model)}?top_k=3&include=digit`;
  const response = await fetch(url, authorised({ method: "POST", body: form }));
  try {
    const answer = await json(response);
    return { answer, ms: performance.now() - started };
  } catch (e) {
    e.ms = performance.now() - started;
    throw e;
  }
}
