// Atelier Studio: sign in, generate, edit, compare, history and API keys, as plain JavaScript
// modules served by `atelier serve` (no build step, nothing fetched from elsewhere). The gallery,
// profiles, the account and moderation are in community.js.

import { api, ApiError, fileToBase64, followJob, setCsrf } from "./api.js";
import {
  keepButton, loadAccount, loadGallery, loadModeration, loadProfile, publishControls, resetCommunity, wireCommunity,
} from "./community.js";
import { MaskEditor } from "./editor.js";
import { $, busy, date, el, placeholder, showError, toast } from "./ui.js";
const VIEWS = ["generate", "edit", "compare", "history", "gallery", "profile", "account", "keys", "moderation"];
const TITLES = { keys: "API keys" };
const TASK_NAMES = {
  text_to_image: "Generate", edit: "Edit", variation: "Variations", outpaint: "Outpaint",
  replace_background: "Replace background", replace_subject: "Replace subject",
};
const state = {
  user: null, admin: false, sizes: [], compare: [], lastSeed: null, editSource: null, history: { q: "", last: null },
};

// --- small helpers --------------------------------------------------------------------------

function numberOrNull(input) {
  const value = input.value.trim();
  return value === "" ? null : Number(value);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new ApiError("The image could not be opened; it may not be a PNG, JPEG or WebP.", 0));
    picture.src = url;
  });
}

// --- signing in and out ---------------------------------------------------------------------

let authMode = "signin";

function setAuthMode(mode) {
  authMode = mode;
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === mode));
  }
  const signup = mode === "signup";
  $("auth-submit").textContent = signup ? "Create account" : "Sign in";
  $("auth-title").textContent = signup ? "Create account" : "Sign in";
  $("auth-password").autocomplete = signup ? "new-password" : "current-password";
  $("auth-hint").hidden = !signup;
  showError("auth-error", null);
}

// The sign-in screen, with an error (`message`) or a confirmation (`notice`) in plain words.
function showAuth(message, notice) {
  state.user = null;
  $("shell").hidden = true;
  $("auth").hidden = false;
  showError("auth-error", message || null);
  $("auth-notice").textContent = notice || "";
  $("auth-notice").hidden = !notice;
  $("auth-name").focus();
}

async function enter(session) {
  state.user = session.user;
  state.admin = Boolean(session.admin);
  $("nav-moderation").hidden = !state.admin;
  $("auth-notice").hidden = true;
  setCsrf(session.csrf_token);
  $("who-name").textContent = session.user.name;
  $("auth").hidden = true;
  $("shell").hidden = false;
  $("auth-password").value = "";
  try {
    const models = await api("GET", "/v1/models");
    state.sizes = models.data[0].sizes;
    $("size").replaceChildren(...state.sizes.map((size) => el("option", { value: size, text: size })));
  } catch (error) {
    showError("generate-error", error);
  }
  route();
}

async function submitAuth(event) {
  event.preventDefault();
  const name = $("auth-name").value.trim();
  const password = $("auth-password").value;
  if (!name || !password) { showError("auth-error", "Enter your user name and password."); return; }
  const path = authMode === "signup" ? "/studio/api/signup" : "/studio/api/login";
  const label = authMode === "signup" ? "Creating account…" : "Signing in…";
  const session = await busy($("auth-submit"), label, "auth-error", () => api("POST", path, { name, password }));
  if (session) await enter(session);
}

async function signOut() {
  await busy($("sign-out"), "Signing out…", null, () => api("POST", "/studio/api/logout"));
  leave();
  showAuth();
}

// Forget everything of the signed-out user on this page.
function leave() {
  state.user = null;
  state.admin = false;
  setCsrf(null);
  resetCommunity();
  state.compare = [];
  updateCompareCount();
  for (const id of ["generate-results", "edit-results", "history-grid", "keys-body", "compare-body"]) {
    $(id).querySelectorAll(".job, .tile, tr, .compare").forEach((node) => node.remove());
  }
  $("generate-empty").hidden = false;
  state.editSource = null;
  $("stage-inner").hidden = true;
  $("stage-empty").hidden = false;
  history.replaceState(null, "", "#/generate");
  setAuthMode("signin");
}

// After DELETE /v1/account: the session is gone with the user; clear the cookie and say so.
async function accountDeleted(message) {
  leave();
  try { await api("POST", "/studio/api/logout"); } catch { /* the session ended with the account */ }
  showAuth(null, message);
}

// --- navigation -----------------------------------------------------------------------------

function route() {
  if (!state.user) return;
  const [, name, rest] = location.hash.match(/^#\/(\w+)(?:\/(.+))?/) || [];
  let view = VIEWS.includes(name) ? name : "generate";
  if ((view === "moderation" && !state.admin) || (view === "profile" && !rest)) view = "gallery";
  const current = view === "profile" ? "gallery" : view;      // a profile is reached from the gallery
  for (const other of VIEWS) $(`view-${other}`).hidden = other !== view;
  for (const link of document.querySelectorAll(".sidebar a")) {
    link.removeAttribute("aria-current");
    if (link.dataset.view === current) link.setAttribute("aria-current", "page");
  }
  $("toast").hidden = true;
  const profileName = view === "profile" ? decodeURIComponent(rest) : null;
  document.title = `${profileName || TITLES[view] || view[0].toUpperCase() + view.slice(1)} · Atelier Studio`;
  if (view === "history") loadHistory(true);
  if (view === "gallery") loadGallery(true);
  if (view === "profile") loadProfile(profileName, true);
  if (view === "account") loadAccount();
  if (view === "moderation") loadModeration();
  if (view === "keys") loadKeys();
  if (view === "compare") renderCompare();
  if (view === "edit") editor.fit();
}

// --- image tiles and jobs ---------------------------------------------------------------------

function describe(meta) {
  if (!meta) return "";
  return [meta.seed !== undefined ? `seed ${meta.seed}` : null, meta.steps ? `${meta.steps} steps` : null,
    meta.guidance !== undefined && meta.guidance !== null ? `guidance ${meta.guidance}` : null].filter(Boolean).join(" · ");
}

function isCompared(id) { return state.compare.some((item) => item.id === id); }

// One of your images: its settings and what you can do with it. `candidates`: it is one of several
// images a job made, so it can be the one you keep.
function tile(item, { showPrompt = false, candidates = false } = {}) {
  const meta = item.metadata || {};
  const kind = meta.task && meta.task !== "text_to_image" ? `${TASK_NAMES[meta.task] || meta.task} · ` : "";
  const compare = el("button", {
    type: "button", class: "toggle small compare-pick", "aria-pressed": String(isCompared(item.id)), "data-compare": item.id,
    title: "Select for side-by-side comparison", onclick: () => toggleCompare(item),
  }, "Compare");
  const figure = el("figure", { class: "tile", "data-id": item.id });
  const [stateTag, publish] = publishControls(item, figure);
  figure.append(
    el("div", { class: "tile-image" },
      el("img", { src: item.url, alt: meta.prompt ? `Image: ${meta.prompt}` : "Generated image", loading: "lazy",
        draggable: "false" }),
      stateTag, compare),
    el("figcaption", {},
      showPrompt ? el("div", { class: "prompt-line", title: meta.prompt || "" }, meta.prompt || "(no prompt)") : null,
      el("div", { class: "meta", title: meta.prompt || "" }, `${kind}${describe(meta)}`),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "small", title: "Put this seed in the Generate settings",
          disabled: meta.seed === undefined, onclick: () => useSeed(meta) }, "Use seed"),
        el("a", { class: "button small", href: `/v1/assets/${item.id}?download=1`, download: "",
          title: "Download the PNG with its generation settings" }, "Download"),
        el("button", { type: "button", class: "small", onclick: () => openInEditor(item) }, "Edit")),
      el("div", { class: "actions community" }, publish, candidates ? keepButton(item, figure) : null)));
  return figure;
}

function jobCard(job, container) {
  const n = job.input.n || 1;
  const status = el("span", { class: "status" });
  const bar = el("div", { class: "bar" });
  const progress = el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" },
    bar);
  const cancel = el("button", { type: "button", class: "ghost small", onclick: async () => {
    await busy(cancel, "Canceling…", null, () => api("POST", `/v1/jobs/${job.id}/cancel`));
  } }, "Cancel");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const grid = el("div", { class: "grid" }, Array.from({ length: n }, placeholder));
  const prompt = job.input.prompt || (job.task === "variation" ? "(no prompt)" : "");
  const card = el("article", { class: "job", "data-job": job.id },
    el("header", {},
      el("div", { class: "job-title" }, el("span", { class: "task" }, TASK_NAMES[job.task] || job.task),
        el("span", { class: "prompt", title: prompt }, prompt)),
      el("div", { class: "job-state" }, status, cancel)),
    progress, error, grid);
  container.prepend(card);
  const update = (latest) => {
    const percent = Math.round((latest.progress || 0) * 100);
    const words = { queued: "Waiting for the model…", running: `Drawing… ${percent}%`, succeeded: "Done",
      failed: "Failed", canceled: "Canceled" };
    status.textContent = words[latest.status] || latest.status;
    card.dataset.status = latest.status;
    bar.style.width = `${latest.status === "succeeded" ? 100 : percent}%`;
    progress.setAttribute("aria-valuenow", String(percent));
    progress.classList.toggle("indeterminate", latest.status === "queued");
    cancel.hidden = !["queued", "running"].includes(latest.status);
  };
  return followJob(job, update).then((ended) => {
    update(ended);
    progress.hidden = ended.status === "succeeded";
    if (ended.status === "succeeded") {
      const images = ended.output.images.map((image) => ({ ...image, metadata: image.metadata || {} }));
      grid.replaceChildren(...images.map((image) => tile(image, { candidates: images.length > 1 })));
      if (images[0] && images[0].metadata.seed !== undefined) state.lastSeed = images[0].metadata.seed;
    } else {
      grid.replaceChildren();
      error.textContent = ended.error ? ended.error.message : "The job ended without images.";
      error.hidden = false;
    }
    return ended;
  });
}

async function startJob(task, input, button, label, errorId, container) {
  const job = await busy(button, label, errorId, () => api("POST", "/v1/jobs", { task, input }));
  if (job) return jobCard(job, container);
  return null;
}

// --- Generate ---------------------------------------------------------------------------------

function setSeedLock(locked) {
  $("seed-lock").setAttribute("aria-pressed", String(locked));
  $("seed-lock").textContent = locked ? "Locked" : "Lock";
}

function useSeed(meta) {
  $("seed").value = meta.seed;
  setSeedLock(true);
  if (meta.prompt && !$("prompt").value.trim()) $("prompt").value = meta.prompt;
  location.hash = "#/generate";
  toast(`Seed ${meta.seed} is set and locked.`);
}

// Remix from the gallery: Generate filled with the image's settings (GET /v1/gallery/{id}/remix),
// its seed locked, ready to make it again or to change first.
function remix(input, item) {
  $("prompt").value = input.prompt && input.prompt.trim() ? input.prompt : "";
  $("negative").value = input.negative_prompt || "";
  $("count").value = "1";
  $("steps").value = input.steps ?? "";
  $("guidance").value = input.guidance ?? "";
  if (input.size) {
    if (![...$("size").options].some((option) => option.value === input.size)) {
      $("size").append(el("option", { value: input.size, text: input.size }));
    }
    $("size").value = input.size;
  }
  $("seed").value = input.seed ?? "";
  setSeedLock(input.seed !== undefined && input.seed !== null);
  showError("generate-error", null);
  location.hash = "#/generate";
  toast(`Remixing ${item.owner}'s image: its settings are filled in and its seed locked. Press Generate.`);
  $("prompt").focus();
}

async function generate(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) { showError("generate-error", "Write a prompt first: what should the image show?"); return; }
  const input = { prompt, n: Number($("count").value) || 1 };
  const negative = $("negative").value.trim();
  if (negative) input.negative_prompt = negative;
  if ($("size").value) input.size = $("size").value;
  for (const [name, id] of [["steps", "steps"], ["guidance", "guidance"], ["seed", "seed"]]) {
    const value = numberOrNull($(id));
    if (value !== null) input[name] = value;
  }
  $("generate-empty").hidden = true;
  await startJob("text_to_image", input, $("generate-submit"), "Sending…", "generate-error", $("generate-results"));
}

// --- Compare ----------------------------------------------------------------------------------

function toggleCompare(item) {
  if (isCompared(item.id)) state.compare = state.compare.filter((other) => other.id !== item.id);
  else {
    state.compare.push(item);
    if (state.compare.length > 2) state.compare.shift();
  }
  updateCompareCount();
  if (state.compare.length === 2) toast("Two images selected: open Compare to see them side by side.");
}

function updateCompareCount() {
  const badge = $("compare-count");
  badge.textContent = String(state.compare.length);
  badge.hidden = state.compare.length === 0;
  for (const button of document.querySelectorAll("[data-compare]")) {
    button.setAttribute("aria-pressed", String(isCompared(button.dataset.compare)));
  }
}

let compareMode = "side";

function renderCompare() {
  const body = $("compare-body");
  $("compare-side").setAttribute("aria-pressed", String(compareMode === "side"));
  $("compare-overlay").setAttribute("aria-pressed", String(compareMode === "overlay"));
  if (state.compare.length < 2) {
    body.replaceChildren(el("div", { class: "empty compare" },
      el("p", { class: "empty-title" }, "Choose two images to compare"),
      el("p", {}, `Press Compare on two images in Generate, Edit or History (${state.compare.length} of 2 chosen).`)));
    return;
  }
  const [a, b] = state.compare;
  const fields = [["Prompt", "prompt"], ["Negative prompt", "negative_prompt"], ["Seed", "seed"], ["Steps", "steps"],
    ["Guidance", "guidance"], ["Size", "size"], ["Task", "task"], ["Sampler", "sampler"], ["Model", "model"]];
  const value = (item, key) => {
    const raw = (item.metadata || {})[key];
    return raw === undefined || raw === null || raw === "" ? "—" : String(raw);
  };
  const table = el("table", { class: "settings-table" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "Left (A)"), el("th", {}, "Right (B)"))),
    el("tbody", {}, fields.map(([label, key]) => el("tr", { class: value(a, key) !== value(b, key) ? "differs" : "" },
      el("th", {}, label), el("td", {}, value(a, key)), el("td", {}, value(b, key))))));
  let pictures;
  if (compareMode === "side") {
    pictures = el("div", { class: "side-by-side" },
      [a, b].map((item, index) => el("figure", { class: "compare-figure" },
        el("img", { src: item.url, alt: `Image ${index ? "B" : "A"}` }),
        el("figcaption", {}, `${index ? "B" : "A"} · ${describe(item.metadata)}`))));
  } else {
    const top = el("img", { src: b.url, alt: "Image B", class: "overlay-top" });
    const line = el("div", { class: "overlay-line" });
    const slider = el("input", { type: "range", min: "0", max: "100", value: "50", "aria-label": "Reveal B",
      class: "overlay-slider", oninput: () => {
        top.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
        line.style.left = `${slider.value}%`;
      } });
    top.style.clipPath = "inset(0 0 0 50%)";
    line.style.left = "50%";
    pictures = el("div", { class: "overlay-wrap" },
      el("div", { class: "overlay" }, el("img", { src: a.url, alt: "Image A" }), top, line),
      el("div", { class: "overlay-labels" }, el("span", {}, "A"), slider, el("span", {}, "B")));
  }
  body.replaceChildren(el("div", { class: "compare" }, pictures, table));
}

// --- History ----------------------------------------------------------------------------------

let historyLoading = false;

async function fetchAssets(q, before, limit = 24) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (q) query.set("q", q);
  if (before) query.set("before", before);
  return api("GET", `/v1/assets?${query}`);
}

async function loadHistory(fresh) {
  if (historyLoading) return;
  historyLoading = true;
  const grid = $("history-grid");
  const more = $("history-more");
  showError("history-error", null);
  if (fresh) {
    state.history.last = null;
    grid.replaceChildren(...Array.from({ length: 6 }, placeholder));
  }
  more.disabled = true;
  more.textContent = "Loading…";
  try {
    const page = await fetchAssets(state.history.q, state.history.last);
    if (fresh) grid.replaceChildren();
    grid.append(...page.data.map((item) => tile(item, { showPrompt: true })));
    if (page.data.length) state.history.last = page.data[page.data.length - 1].id;
    more.hidden = !page.has_more;
    if (fresh && !page.data.length) {
      grid.append(el("div", { class: "empty" }, el("p", { class: "empty-title" },
        state.history.q ? `No images whose prompt contains “${state.history.q}”` : "No images yet"),
      el("p", {}, state.history.q ? "Try other words, or clear the search." : "Images you generate or edit are kept here.")));
    }
  } catch (error) {
    if (fresh) grid.replaceChildren();
    showError("history-error", error);
  } finally {
    more.disabled = false;
    more.textContent = "Load more";
    historyLoading = false;
  }
}

// --- Edit -------------------------------------------------------------------------------------

const editor = new MaskEditor({
  stage: $("stage"), inner: $("stage-inner"), imageCanvas: $("image-canvas"), maskCanvas: $("mask-canvas"),
  cursor: $("brush-cursor"),
  onChange: (current) => {
    $("tool-brush").setAttribute("aria-pressed", String(!current.erasing));
    $("tool-eraser").setAttribute("aria-pressed", String(current.erasing));
    $("brush-size").value = String(current.size);
    $("brush-size-value").textContent = String(current.size);
    $("mask-undo").disabled = current.undoStack.length === 0;
  },
});

async function setEditSource(source, url, label) {
  showError("edit-error", null);
  try {
    const picture = await loadImage(url);
    state.editSource = source;
    $("stage-empty").hidden = true;
    $("stage-inner").hidden = false;
    editor.load(picture);
    $("edit-tools").disabled = false;
    $("edit-actions").disabled = false;
    $("edit-source-label").textContent = `${label} · ${picture.width}×${picture.height} px`;
  } catch (error) {
    showError("edit-error", error);
  }
}

function openInEditor(item) {
  location.hash = "#/edit";
  const meta = item.metadata || {};
  if (meta.prompt) $("edit-prompt").value = meta.prompt;
  setEditSource(item.id, item.url, meta.seed !== undefined ? `From history, seed ${meta.seed}` : "From history");
}

async function useFile(file) {
  if (!file) return;
  if (!/^image\//.test(file.type)) { showError("edit-error", "That file is not an image: choose a PNG, JPEG or WebP."); return; }
  const data = await fileToBase64(file);
  await setEditSource(data, URL.createObjectURL(file), `Uploaded: ${file.name}`);
}

function editSettings() {
  const input = { image: state.editSource, prompt: $("edit-prompt").value.trim(), n: Number($("edit-count").value) || 1 };
  const seed = numberOrNull($("edit-seed"));
  if (seed !== null) input.seed = seed;
  return input;
}

async function applyEdit() {
  if (editor.coverage() === 0) {
    showError("edit-error", "Paint the area to change first: the painted (highlighted) area is redrawn.");
    return;
  }
  await startJob("edit", { ...editSettings(), mask: editor.exportMask() }, $("edit-apply"), "Sending…", "edit-error",
    $("edit-results"));
}

async function automaticMask(kind, button) {
  $("stage-busy-text").textContent = kind === "background" ? "Finding the background…" : "Finding the subject…";
  $("stage-busy").hidden = false;
  editor.disabled = true;
  try {
    const found = await busy(button, "Finding…", "edit-error",
      () => api("POST", "/v1/masks", { image: state.editSource, kind }));
    if (found) {
      editor.setMask(await loadImage(`data:image/png;base64,${found.mask}`));
      if (!$("edit-prompt").value.trim() || $("edit-prompt").dataset.auto) {
        $("edit-prompt").placeholder = kind === "background" ? "the subject on a new background, e.g. …on a striped background"
          : "the new subject, e.g. a green heart on a white background";
      }
      const objects = found.objects === 1 ? "1 object" : `${found.objects} objects`;
      toast(`Automatic ${kind} mask loaded (${objects} found). Refine it with the brush, then Apply.`);
    }
  } finally {
    $("stage-busy").hidden = true;
    editor.disabled = false;
  }
}

async function openPicker(fresh = true) {
  const dialog = $("picker");
  const grid = $("picker-grid");
  if (fresh) {
    dialog.dataset.last = "";
    grid.replaceChildren(...Array.from({ length: 6 }, placeholder));
    if (!dialog.open) dialog.showModal();
  }
  try {
    const page = await fetchAssets("", dialog.dataset.last || null, 30);
    if (fresh) grid.replaceChildren();
    grid.append(...page.data.map((item) => el("button", { type: "button", class: "pick", title: item.metadata.prompt || "",
      onclick: () => { dialog.close(); openInEditor(item); } }, el("img", { src: item.url, alt: item.metadata.prompt || "" }))));
    if (fresh && !page.data.length) grid.append(el("p", { class: "empty" }, "No images yet: generate some first."));
    if (page.data.length) dialog.dataset.last = page.data[page.data.length - 1].id;
    $("picker-more").hidden = !page.has_more;
  } catch (error) {
    grid.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

// --- API keys ---------------------------------------------------------------------------------

async function loadKeys() {
  showError("keys-error", null);
  try {
    const keys = await api("GET", "/studio/api/keys");
    $("keys-body").replaceChildren(...keys.data.map((key) => {
      const revoke = el("button", { type: "button", class: "ghost small danger", onclick: async () => {
        if (!window.confirm(`Revoke ${key.prefix}…? Programs using it stop working at once.`)) return;
        if (await busy(revoke, "Revoking…", "keys-error", () => api("DELETE", `/studio/api/keys/${key.prefix}`))) {
          loadKeys();
        }
      } }, "Revoke");
      const studio = key.label === "studio";
      return el("tr", { class: key.revoked ? "revoked" : "" },
        el("td", {}, el("code", {}, `${key.prefix}…`), studio ? el("span", { class: "tag" }, "this studio") : null),
        el("td", {}, date(key.created)),
        el("td", {}, key.revoked ? `Revoked ${date(key.revoked)}` : "Active"),
        el("td", { class: "right" }, key.revoked || studio ? null : revoke));
    }));
  } catch (error) {
    showError("keys-error", error);
  }
}

async function createKey() {
  const made = await busy($("key-create"), "Creating…", "keys-error", () => api("POST", "/studio/api/keys"));
  if (!made) return;
  $("key-text").textContent = made.key;
  $("key-new").hidden = false;
  loadKeys();
}

// --- wiring -----------------------------------------------------------------------------------

function wire() {
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) tab.addEventListener("click", () => setAuthMode(tab.dataset.mode));
  $("auth-form").addEventListener("submit", submitAuth);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  window.addEventListener("studio:signed-out", () => { if (state.user) showAuth("Your session has ended. Sign in again."); });

  $("generate-form").addEventListener("submit", generate);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("generate-form").requestSubmit();
  });
  $("seed").addEventListener("input", () => setSeedLock($("seed").value.trim() !== ""));
  $("seed-lock").addEventListener("click", () => {
    const locked = $("seed-lock").getAttribute("aria-pressed") === "true";
    if (locked) { $("seed").value = ""; setSeedLock(false); return; }
    if ($("seed").value.trim() === "" && state.lastSeed !== null) $("seed").value = state.lastSeed;
    if ($("seed").value.trim() === "") { toast("Generate once, or type a seed, to have one to lock."); return; }
    setSeedLock(true);
  });

  $("compare-side").addEventListener("click", () => { compareMode = "side"; renderCompare(); });
  $("compare-overlay").addEventListener("click", () => { compareMode = "overlay"; renderCompare(); });
  $("compare-clear").addEventListener("click", () => { state.compare = []; updateCompareCount(); renderCompare(); });

  $("history-search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.history.q = $("history-q").value.trim();
    loadHistory(true);
  });
  $("history-q").addEventListener("search", () => { state.history.q = $("history-q").value.trim(); loadHistory(true); });
  $("history-more").addEventListener("click", () => loadHistory(false));

  $("edit-file").addEventListener("change", (event) => { useFile(event.target.files[0]); event.target.value = ""; });
  $("edit-pick").addEventListener("click", () => openPicker(true));
  $("picker-close").addEventListener("click", () => $("picker").close());
  $("picker-more").addEventListener("click", () => openPicker(false));
  const stage = $("stage");
  stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("dropping"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dropping"));
  stage.addEventListener("drop", (event) => {
    event.preventDefault();
    stage.classList.remove("dropping");
    useFile(event.dataTransfer.files[0]);
  });
  $("tool-brush").addEventListener("click", () => editor.setTool(false));
  $("tool-eraser").addEventListener("click", () => editor.setTool(true));
  $("brush-size").addEventListener("input", () => editor.setSize(Number($("brush-size").value)));
  $("mask-opacity").addEventListener("input", () => {
    const percent = Number($("mask-opacity").value);
    $("mask-canvas").style.opacity = String(percent / 100);   // display only: the exported mask is opaque
    $("mask-opacity-value").textContent = `${percent}%`;
  });
  $("mask-undo").addEventListener("click", () => editor.undo());
  $("mask-clear").addEventListener("click", () => editor.clear());
  $("mask-invert").addEventListener("click", () => editor.invert());
  $("auto-background").addEventListener("click", (event) => automaticMask("background", event.currentTarget));
  $("auto-subject").addEventListener("click", (event) => automaticMask("subject", event.currentTarget));
  $("edit-apply").addEventListener("click", applyEdit);
  $("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });
  $("edit-vary").addEventListener("click", () => startJob("variation",
    { ...editSettings(), strength: Number($("strength").value) }, $("edit-vary"), "Sending…", "edit-error", $("edit-results")));
  $("edit-outpaint").addEventListener("click", () => {
    const sides = Object.fromEntries(["left", "right", "top", "bottom"].map((side) => [side, Number($(`out-${side}`).value) || 0]));
    if (!Object.values(sides).some(Boolean)) { showError("edit-error", "Give at least one side a number of pixels to add."); return; }
    startJob("outpaint", { ...editSettings(), ...sides }, $("edit-outpaint"), "Sending…", "edit-error", $("edit-results"));
  });
  document.addEventListener("keydown", (event) => {
    if ($("view-edit").hidden || !editor.loaded) return;
    if (event.target.closest("input, textarea, select, [contenteditable]")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); editor.undo(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "b" || event.key === "B") editor.setTool(false);
    else if (event.key === "e" || event.key === "E") editor.setTool(true);
    else if (event.key === "[") editor.setSize(editor.size - (editor.size > 10 ? 2 : 1));
    else if (event.key === "]") editor.setSize(editor.size + (editor.size >= 10 ? 2 : 1));
  });

  $("key-create").addEventListener("click", createKey);
  wireCommunity({ user: () => state.user, remix, accountDeleted });
  $("key-copy").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText($("key-text").textContent); toast("Copied."); } catch {
      toast("Copy was refused by the browser: select the key and copy it by hand.");
    }
  });
}

async function start() {
  wire();
  setAuthMode("signin");
  try {
    await enter(await api("GET", "/studio/api/session"));
  } catch (error) {
    showAuth(error.status === 401 ? null : error.message);
  }
}

start();
