// The community in the studio: publishing and keeping your own images (controls on the Generate,
// Edit and History tiles), the public gallery (search, sort, likes, remix, reports), profiles,
// the account (training consent, deletion) and, for admins, the moderation of reports.
// The same /v1 endpoints any client has (atelier/server/routers/community.py).

import { api } from "./api.js";
import { $, busy, day, el, placeholder, showError, toast } from "./ui.js";

const PAGE = 24;
// Set by app.js: who is signed in, how to fill Generate from a remix, what to do once the account is gone.
const hooks = { user: () => null, remix: () => {}, accountDeleted: () => {} };
const gallery = { q: "", sort: "new", offset: 0, loading: false };
const profile = { name: null, offset: 0, loading: false };
let reportTarget = null;

// --- your own images: Publish / Unpublish and Keep --------------------------------------------

// The state tag on the image and the Publish button's words, from {published, hidden}.
function showPublished(figure, button, item) {
  figure.dataset.published = String(Boolean(item.published));
  const tag = figure.querySelector(".state-tag");
  tag.hidden = !item.published && !item.hidden;
  tag.textContent = item.hidden ? "Hidden by a moderator" : "Public";
  tag.classList.toggle("blocked", Boolean(item.hidden));
  button.textContent = item.published ? "Unpublish" : "Publish";
  button.setAttribute("aria-pressed", String(Boolean(item.published)));
  button.title = item.hidden ? "A moderator hid this image after a report; it cannot be published again."
    : item.published ? "Take it out of the gallery and your profile" : "Show it in the public gallery and on your profile";
}

// The publish control of one of your tiles: [the tag on the image, the button].
export function publishControls(item, figure) {
  const state = { published: Boolean(item.published), hidden: Boolean(item.hidden) };
  const tag = el("span", { class: "state-tag", hidden: true });
  const button = el("button", { type: "button", class: "small toggle publish" });
  button.addEventListener("click", async () => {
    const action = state.published ? "unpublish" : "publish";
    let refused = null;
    const answer = await busy(button, state.published ? "Unpublishing…" : "Publishing…", null, async () => {
      try {
        return await api("POST", `/v1/assets/${item.id}/${action}`);
      } catch (error) {
        if (error.code === "hidden_by_moderator") refused = error;
        throw error;
      }
    });
    if (answer) {
      state.published = Boolean(answer.published);
      toast(state.published ? "Published: it is in the gallery and on your profile." : "Taken out of the gallery.");
    }
    if (refused) { state.hidden = true; state.published = false; }
    showPublished(figure, button, state);
  });
  queueMicrotask(() => showPublished(figure, button, state));
  return [tag, button];
}

// "Keep": this one of a job's candidates is the one you keep (the others are its passed-over side).
// A job's Keep clicks form one chain: the tiles show the latest click at once, its requests go to the
// server one after another in click order (so the server ends on the last click, whatever order a
// loaded machine would have answered concurrent requests in), and when the chain is idle the tiles
// show the server's final answer; after a failure, the last choice the server confirmed.
const keepChains = new WeakMap();   // the job's grid -> { tail, pending, confirmed }

function showKept(grid, keptId) {
  for (const tile of grid.querySelectorAll(".tile")) {
    const chosen = tile.dataset.id === keptId;
    tile.classList.toggle("kept", chosen);
    const control = tile.querySelector(".keep");
    if (control) {
      control.setAttribute("aria-pressed", String(chosen));
      control.textContent = chosen ? "Kept" : "Keep";
    }
  }
}

export function keepButton(item, figure) {
  const button = el("button", { type: "button", class: "small toggle keep", "aria-pressed": "false",
    title: "This is the one I keep of these images" }, "Keep");
  button.addEventListener("click", () => {
    const grid = figure.closest(".grid");
    if (!keepChains.has(grid)) keepChains.set(grid, { tail: Promise.resolve(), pending: 0, confirmed: null });
    const chain = keepChains.get(grid);
    chain.pending += 1;
    grid.setAttribute("aria-busy", "true");
    showKept(grid, item.id);
    chain.tail = chain.tail.then(async () => {
      let failure = null;
      try {
        chain.confirmed = (await api("POST", `/v1/assets/${item.id}/keep`)).kept;
      } catch (error) {
        failure = error;
      }
      chain.pending -= 1;
      if (failure) toast(failure.message);
      if (chain.pending > 0) return;
      grid.removeAttribute("aria-busy");
      showKept(grid, chain.confirmed);
      if (!failure) toast("Kept. Your choice helps train better models if you allow it in Account.");
    });
  });
  return button;
}

// --- the gallery and profiles -----------------------------------------------------------------

function likeLabel(likes, liked) {
  return `${liked ? "Unlike" : "Like"} (${likes} ${likes === 1 ? "like" : "likes"})`;
}

function likeButton(item) {
  let { likes, liked } = item;
  const count = el("span", { class: "count" }, String(likes));
  const button = el("button", { type: "button", class: "small toggle like", "aria-pressed": String(Boolean(liked)),
    "aria-label": likeLabel(likes, liked), title: liked ? "Unlike" : "Like" }, el("span", { "aria-hidden": "true" }, "♥"),
  count);
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const answer = await api(liked ? "DELETE" : "POST", `/v1/gallery/${item.id}/like`);
      ({ likes, liked } = answer);
    } catch (error) {
      toast(error.status === 404 ? "This image is no longer in the gallery." : error.message);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
    count.textContent = String(likes);
    button.setAttribute("aria-pressed", String(liked));
    button.setAttribute("aria-label", likeLabel(likes, liked));
    button.title = liked ? "Unlike" : "Like";
  });
  return button;
}

function galleryTile(item) {
  const mine = hooks.user() && hooks.user().name === item.owner;
  const remix = el("button", { type: "button", class: "small", title: "Open Generate with this image's settings" },
    "Remix");
  remix.addEventListener("click", async () => {
    const job = await busy(remix, "Opening…", null, () => api("GET", `/v1/gallery/${item.id}/remix`));
    if (job) hooks.remix(job.input, item);
  });
  const report = mine ? null : el("button", { type: "button", class: "small ghost report",
    title: "Tell the moderators this image should not be shown", onclick: (event) => openReport(item, event.currentTarget) },
  "Report");
  const settings = [item.seed !== null && item.seed !== undefined ? `seed ${item.seed}` : null,
    item.steps ? `${item.steps} steps` : null].filter(Boolean).join(" · ");
  return el("figure", { class: "tile gallery-tile", "data-id": item.id },
    el("div", { class: "tile-image" },
      el("img", { src: item.url, alt: item.prompt ? `Image: ${item.prompt}` : "Published image", loading: "lazy",
        draggable: "false" })),
    el("figcaption", {},
      el("div", { class: "prompt-line", title: item.prompt || "" }, item.prompt || "(no prompt)"),
      el("div", { class: "meta" }, "by ", el("a", { class: "owner", href: `#/profile/${encodeURIComponent(item.owner)}` },
        item.owner), settings ? ` · ${settings}` : ""),
      el("div", { class: "actions" }, likeButton(item), remix, report)));
}

function emptyBox(title, text) {
  return el("div", { class: "empty" }, el("p", { class: "empty-title" }, title), el("p", {}, text));
}

async function loadPage(grid, more, errorId, state, fetchPage, onEmpty, fresh) {
  if (state.loading) return;
  state.loading = true;
  showError(errorId, null);
  if (fresh) {
    state.offset = 0;
    grid.replaceChildren(...Array.from({ length: 6 }, placeholder));
  }
  more.disabled = true;
  more.textContent = "Loading…";
  try {
    const page = await fetchPage(state.offset);
    const items = page.data || page.items;
    if (fresh) grid.replaceChildren();
    grid.append(...items.map(galleryTile));
    state.offset += items.length;
    more.hidden = !page.has_more;
    if (fresh && !items.length) grid.append(onEmpty());
    return page;
  } catch (error) {
    if (fresh) grid.replaceChildren();
    more.hidden = true;
    showError(errorId, error);
    return null;
  } finally {
    more.disabled = false;
    more.textContent = "Load more";
    state.loading = false;
  }
}

export function loadGallery(fresh = true) {
  $("gallery-new").setAttribute("aria-pressed", String(gallery.sort === "new"));
  $("gallery-likes").setAttribute("aria-pressed", String(gallery.sort === "likes"));
  return loadPage($("gallery-grid"), $("gallery-more"), "gallery-error", gallery, (offset) => {
    const query = new URLSearchParams({ sort: gallery.sort, limit: String(PAGE), offset: String(offset) });
    if (gallery.q) query.set("q", gallery.q);
    return api("GET", `/v1/gallery?${query}`);
  }, () => (gallery.q ? emptyBox(`No published images whose prompt contains “${gallery.q}”`,
    "Try other words, or clear the search.")
    : emptyBox("The gallery is empty", "Publish one of your images from Generate or History to show it here.")), fresh);
}

export async function loadProfile(name, fresh = true) {
  if (fresh) {
    profile.name = name;
    $("profile-title").textContent = name;
    $("profile-stats").hidden = true;
  }
  const page = await loadPage($("profile-grid"), $("profile-more"), "profile-error", profile,
    (offset) => api("GET", `/v1/profiles/${encodeURIComponent(profile.name)}?limit=${PAGE}&offset=${offset}`),
    () => emptyBox("Nothing published yet", `${profile.name} has not published any images.`), fresh);
  if (page && fresh) {
    $("profile-joined").textContent = day(page.joined);
    $("profile-published").textContent = String(page.published);
    $("profile-likes").textContent = String(page.likes);
    $("profile-published-label").textContent = page.published === 1 ? "image published" : "images published";
    $("profile-likes-label").textContent = page.likes === 1 ? "like received" : "likes received";
    $("profile-stats").hidden = false;
  }
}

// --- reports ----------------------------------------------------------------------------------

function openReport(item, button) {
  reportTarget = { item, button };
  $("report-reason").value = "";
  showError("report-error", null);
  $("report-what").textContent = item.prompt ? `“${item.prompt}” by ${item.owner}` : `An image by ${item.owner}`;
  $("report-dialog").showModal();
  $("report-reason").focus();
}

async function sendReport(event) {
  event.preventDefault();
  const reason = $("report-reason").value.trim();
  if (!reason) { showError("report-error", "Say in a few words what is wrong with this image."); return; }
  const { item, button } = reportTarget;
  const sent = await busy($("report-submit"), "Reporting…", "report-error",
    () => api("POST", `/v1/gallery/${item.id}/report`, { reason }));
  if (!sent) return;
  $("report-dialog").close();
  button.textContent = "Reported";
  button.disabled = true;
  toast("Reported; a moderator will look at it.");
}

// --- the account ------------------------------------------------------------------------------

export async function loadAccount() {
  showError("account-error", null);
  $("delete-confirm").value = "";
  $("delete-account").disabled = true;
  showError("delete-error", null);
  $("consent-status").textContent = "";
  try {
    const account = await api("GET", "/v1/account");
    $("account-name").textContent = account.name;
    $("account-joined").textContent = day(account.joined);
    $("account-profile").href = `#/profile/${encodeURIComponent(account.name)}`;
    $("delete-name").textContent = account.name;
    $("consent").checked = account.training_consent;
    $("consent").disabled = false;
  } catch (error) {
    showError("account-error", error);
  }
}

async function saveConsent() {
  const box = $("consent");
  const wanted = box.checked;
  box.disabled = true;
  $("consent-status").textContent = "Saving…";
  try {
    const account = await api("PATCH", "/v1/account", { training_consent: wanted });
    box.checked = account.training_consent;
    $("consent-status").textContent = account.training_consent
      ? "Saved: your published images and feedback may be used for training."
      : "Saved: nothing of yours will be used for training.";
  } catch (error) {
    box.checked = !wanted;
    $("consent-status").textContent = "";
    showError("account-error", error);
  } finally {
    box.disabled = false;
  }
}

async function deleteAccount() {
  const name = hooks.user() && hooks.user().name;
  const confirm = $("delete-confirm").value;
  if (confirm !== name) { showError("delete-error", `Type your user name, ${name}, exactly to confirm.`); return; }
  const deleted = await busy($("delete-account"), "Deleting…", "delete-error",
    () => api("DELETE", "/v1/account", { confirm }));
  if (!deleted) return;
  const images = deleted.images === 1 ? "1 image" : `${deleted.images} images`;
  hooks.accountDeleted(`The account ${deleted.deleted} was deleted, with ${images} and everything else of it.`);
}

// --- moderation (admins) ------------------------------------------------------------------------

function reportCard(entry) {
  const hide = el("button", { type: "button", class: "danger-solid", title: "Take it out of the gallery for good" },
    "Hide");
  const keep = el("button", { type: "button", title: "Close the reports and leave it in the gallery" },
    "Keep visible");
  const card = el("article", { class: "report-card", "data-id": entry.id },
    el("img", { src: entry.url, alt: entry.prompt ? `Reported image: ${entry.prompt}` : "Reported image" }),
    el("div", { class: "report-body" },
      el("div", { class: "report-head" },
        el("span", { class: "report-count" }, entry.reports === 1 ? "1 report" : `${entry.reports} reports`),
        el("span", { class: "meta" }, "by ", el("a", { href: `#/profile/${encodeURIComponent(entry.owner)}` },
          entry.owner))),
      el("p", { class: "report-prompt" }, entry.prompt || "(no prompt)"),
      el("ul", { class: "reasons" }, entry.reasons.map((reason) => el("li", {}, reason))),
      el("div", { class: "button-row" }, hide, keep)));
  const decide = async (hidden, button) => {
    const done = await busy(button, hidden ? "Hiding…" : "Closing…", "moderation-error",
      () => api("POST", `/v1/admin/assets/${entry.id}/hide`, { hidden }));
    if (!done) return;
    card.remove();
    toast(hidden ? "Hidden from the gallery; its reports are closed." : "Kept visible; its reports are closed.");
    if (!$("moderation-list").children.length) $("moderation-list").append(noReports());
  };
  hide.addEventListener("click", () => decide(true, hide));
  keep.addEventListener("click", () => decide(false, keep));
  return card;
}

function noReports() {
  return emptyBox("No open reports", "Reports people send about published images appear here.");
}

export async function loadModeration() {
  showError("moderation-error", null);
  const list = $("moderation-list");
  list.replaceChildren(el("p", { class: "hint" }, "Loading…"));
  try {
    const reports = await api("GET", "/v1/admin/reports");
    list.replaceChildren(...reports.data.map(reportCard));
    if (!reports.data.length) list.append(noReports());
  } catch (error) {
    list.replaceChildren();
    showError("moderation-error", error);
  }
}

// --- wiring -----------------------------------------------------------------------------------

export function resetCommunity() {
  gallery.q = "";
  gallery.sort = "new";
  $("gallery-q").value = "";
  for (const id of ["gallery-grid", "profile-grid", "moderation-list"]) $(id).replaceChildren();
  $("consent").checked = false;
}

export function wireCommunity(given) {
  Object.assign(hooks, given);
  $("gallery-search").addEventListener("submit", (event) => {
    event.preventDefault();
    gallery.q = $("gallery-q").value.trim();
    loadGallery(true);
  });
  $("gallery-q").addEventListener("search", () => { gallery.q = $("gallery-q").value.trim(); loadGallery(true); });
  $("gallery-new").addEventListener("click", () => { gallery.sort = "new"; loadGallery(true); });
  $("gallery-likes").addEventListener("click", () => { gallery.sort = "likes"; loadGallery(true); });
  $("gallery-more").addEventListener("click", () => loadGallery(false));
  $("profile-more").addEventListener("click", () => loadProfile(profile.name, false));
  $("report-form").addEventListener("submit", sendReport);
  $("report-cancel").addEventListener("click", () => $("report-dialog").close());
  $("consent").addEventListener("change", saveConsent);
  $("delete-confirm").addEventListener("input", () => {
    $("delete-account").disabled = $("delete-confirm").value !== (hooks.user() && hooks.user().name);
  });
  $("delete-form").addEventListener("submit", (event) => { event.preventDefault(); deleteAccount(); });
  $("moderation-refresh").addEventListener("click", loadModeration);
}
