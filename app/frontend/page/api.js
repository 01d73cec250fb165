// The service's API, relative to the page (so a path prefix works too).

export class ProblemError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || "request failed");
    this.problem = problem;
  }
}

async function json(response) {
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) throw new ProblemError(body);
  return body;
}

export async function listModels() {
  return (await json(await fetch("models"))).models;
}

// files: [[name, Blob]]. Resolves to {answer, ms}; rejects with a ProblemError.
export async function predict(model, files) {
  const form = new FormData();
  for (const [name, blob] of files) form.append("files", blob, name);
  const started = performance.now();
  const response = await fetch(`predict/${encodeURIComponent(model)}?top_k=3&include=digit`, {
    method: "POST",
    body: form,
  });
  const answer = await json(response);
  return { answer, ms: performance.now() - started };
}
