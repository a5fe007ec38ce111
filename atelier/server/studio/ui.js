// Small DOM helpers shared by the studio's modules: element building, error boxes, the toast,
// busy buttons and dates.

export const $ = (id) => document.getElementById(id);

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function showError(id, error) {
  const box = $(id);
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

let toastTimer = null;
export function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 3500);
}

// Run `work` with `button` disabled and labelled busy; errors go to the message box `errorId`
// (or the toast). Resolves with what `work` returned, or undefined when it failed.
export async function busy(button, label, errorId, work) {
  const before = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = label;
  if (errorId) showError(errorId, null);
  try {
    return await work();
  } catch (error) {
    if (errorId) showError(errorId, error); else toast(error.message);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = before;
  }
}

export function placeholder() {
  return el("figure", { class: "tile pending" }, el("div", { class: "shimmer" }));
}

export function date(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

export function day(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleDateString(undefined, { dateStyle: "long" }) : "";
}
