// The studio's only way to the server: the same /v1 API as any client, the session cookie standing
// in for a Bearer key. Every change carries the session's CSRF token; every failure becomes an
// ApiError whose message is the server's own `error.message`, in plain words.

let csrf = null;

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) { csrf = token; }

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The studio cannot reach the server. Check that `atelier serve` is running, then try again.", 0,
      "offline");
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: handled below */ }
  if (!response.ok) {
    const error = data && data.error;
    let message = error && error.message ? error.message : `The server answered ${response.status}.`;
    if (response.status === 429 && response.headers.get("Retry-After")) {
      message = error && error.message ? error.message : `Too many requests; try again in ${response.headers.get("Retry-After")} s.`;
    }
    const failure = new ApiError(message, response.status, error && error.code);
    if (response.status === 401 && path !== "/studio/api/login" && path !== "/studio/api/signup") {
      window.dispatchEvent(new CustomEvent("studio:signed-out", { detail: failure }));
    }
    throw failure;
  }
  return data;
}

// A job's changes until it ends: Server-Sent Events (the cookie goes along), or polling if the
// stream fails. `onChange(job)` is called for each change; resolves with the ended job.
const FINAL = new Set(["succeeded", "failed", "canceled"]);

export function followJob(job, onChange) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ended) => { if (!done) { done = true; resolve(ended); } };
    onChange(job);
    if (FINAL.has(job.status)) { finish(job); return; }
    let source;
    try { source = new EventSource(`/v1/jobs/${job.id}/events`); } catch { source = null; }
    const poll = async () => {
      while (!done) {
        try {
          const latest = await api("GET", `/v1/jobs/${job.id}`);
          onChange(latest);
          if (FINAL.has(latest.status)) { finish(latest); return; }
        } catch (error) {
          if (error.status === 404 || error.status === 401) {
            finish({ ...job, status: "failed", error: { message: error.message } });
            return;
          }
        }
        await new Promise((wait) => setTimeout(wait, 700));
      }
    };
    if (!source) { poll(); return; }
    const handle = (event) => {
      const latest = JSON.parse(event.data);
      onChange(latest);
      if (FINAL.has(latest.status)) { source.close(); finish(latest); }
    };
    for (const name of ["queued", "running", "succeeded", "failed", "canceled"]) source.addEventListener(name, handle);
    source.onerror = () => {
      if (done) return;
      source.close();
      poll();
    };
  });
}

// The file of an <input type=file> or a drop as base64 (without the data: header).
export function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new ApiError("The file could not be read.", 0, "unreadable"));
    reader.readAsDataURL(file);
  });
}
