// Claude Scope's page: the public API from the same origin, nothing else.
// Every text from the API (titles, steps, page errors: chosen by whoever made the recording or the page)
// goes into the page with textContent, never as markup.

const $ = (id) => document.getElementById(id);
const KEY = "scope-key";
const POLL_MS = 800;
let apiKey = sessionStorage.getItem(KEY) || "";
let current = null; // the session on screen
let frameIndex = 0;
let polling = null;
let listPolling = null; // the list looks again while a session in it is being processed

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// --------------------------------------------------------------------------- the API

function authHeaders() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

async function api(path, { method = "GET", json } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch {
    throw new ApiError(0, "The service cannot be reached. Check the connection and try again.");
  }
  if (response.status === 401) {
    askForKey(apiKey ? "That key was not accepted. Enter a valid API key." : "");
    throw new ApiError(401, "An API key is needed.");
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: the status text says enough
    }
    throw new ApiError(response.status, message);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// --------------------------------------------------------------------------- small helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(view) {
  for (const id of ["key-view", "home-view", "session-view"]) $(id).hidden = id !== view;
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function stopPolling() {
  if (polling !== null) clearTimeout(polling);
  if (listPolling !== null) clearTimeout(listPolling);
  polling = listPolling = null;
}

// --------------------------------------------------------------------------- the key

function askForKey(message) {
  apiKey = "";
  sessionStorage.removeItem(KEY);
  stopPolling();
  $("sign-out").hidden = true;
  $("caller").textContent = "";
  say("key-message", message, Boolean(message));
  show("key-view");
  $("key-input").value = "";
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("key-input").value.trim();
  if (!apiKey) return;
  sessionStorage.setItem(KEY, apiKey);
  start();
});

$("sign-out").addEventListener("click", () => askForKey(""));

async function start() {
  let me;
  try {
    me = await api("/auth/me");
  } catch (error) {
    if (error.status !== 401) say("key-message", error.message, true);
    return;
  }
  $("caller").textContent = me.id === "anonymous" ? "" : `Signed in as ${me.name}`;
  $("sign-out").hidden = !apiKey;
  route();
}

// --------------------------------------------------------------------------- routes

function route() {
  stopPolling();
  const match = location.hash.match(/^#\/sessions\/([A-Za-z0-9_]+)$/);
  if (match) openSession(match[1]);
  else openHome();
}

window.addEventListener("hashchange", () => {
  if (!$("key-view").hidden && !apiKey) return;
  route();
});

// --------------------------------------------------------------------------- home: upload and the list

async function openHome() {
  show("home-view");
  document.title = "Claude Scope";
  await loadSessions();
}

async function loadSessions() {
  let sessions;
  try {
    sessions = await api("/sessions");
  } catch (error) {
    if (error.status !== 401) say("upload-message", error.message, true);
    return;
  }
  const rows = $("session-rows");
  rows.replaceChildren(...sessions.map(sessionRow));
  $("session-table").hidden = sessions.length === 0;
  $("list-empty").hidden = sessions.length !== 0;
  if (listPolling !== null) clearTimeout(listPolling);
  listPolling = null;
  const inFlight = sessions.some((s) => s.status === "processing" && s.processingStatus !== "processing");
  if (inFlight && !$("home-view").hidden) listPolling = setTimeout(loadSessions, POLL_MS * 2);
}

function sessionRow(session) {
  const remove = el("button", { type: "button", class: "danger", "aria-label": `Delete ${session.title}`,
                                onclick: () => removeSession(session, loadSessions) }, "Delete");
  const status = session.status === "processing" && session.processingStatus !== "processing"
    ? `${session.processingStatus} (${session.progress} %)` : session.status;
  return el("tr", {},
    el("td", {}, el("a", { href: `#/sessions/${encodeURIComponent(session.id)}` }, session.title)),
    el("td", { class: `status-${session.status}` }, status),
    el("td", {}, `${session.duration} s`),
    el("td", {}, String(session.frameCount)),
    el("td", {}, when(session.createdAt)),
    el("td", {}, remove));
}

async function removeSession(session, then) {
  if (!confirm(`Delete “${session.title}” and everything stored for it?`)) return;
  try {
    await api(`/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 401) alert(`Could not delete: ${error.message}`);
    return;
  }
  then();
}

const drop = $("drop");
const fileInput = $("file-input");
fileInput.addEventListener("change", () => {
  $("file-name").textContent = fileInput.files.length ? `Selected: ${fileInput.files[0].name}` : "";
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (!file) return;
  const files = new DataTransfer();
  files.items.add(file);
  fileInput.files = files.files;
  fileInput.dispatchEvent(new Event("change"));
});

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const file = fileInput.files[0];
  const problem = !file ? "Pick a recording to upload."
    : file.size > Number(document.body.dataset.maxBytes) ? "The recording is larger than 100 MB."
    : !form.title.value.trim() ? "Give the recording a title."
    : !/^https?:\/\/[^\s/]+/i.test(form.seedUrl.value.trim()) ? "Give the http(s) URL where the flow starts."
    : "";
  if (problem) {
    say("upload-message", problem, true);
    return;
  }
  uploadRecording(new FormData(form));
});

function uploadRecording(data) {
  const button = $("upload-button");
  button.disabled = true;
  $("progress-box").hidden = false;
  $("upload-progress").value = 0;
  $("process-progress").value = 0;
  $("upload-label").textContent = "Uploading";
  $("process-label").textContent = "Processing (waiting for the upload)";
  say("upload-message", "");
  const request = new XMLHttpRequest();
  request.open("POST", "/recordings");
  request.setRequestHeader("Prefer", "respond-async");
  for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
  request.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    const percent = Math.round((event.loaded / event.total) * 100);
    $("upload-progress").value = percent;
    $("upload-label").textContent = `Uploading: ${percent} %`;
  });
  request.addEventListener("load", () => {
    let body = {};
    try {
      body = JSON.parse(request.responseText);
    } catch {
      // not JSON: the status says enough
    }
    if (request.status === 202 || request.status === 200) {
      $("upload-progress").value = 100;
      $("upload-label").textContent = "Uploaded";
      const sessionId = body.sessionId;
      if (request.status === 200) finishUpload(sessionId);
      else followProcessing(sessionId);
      return;
    }
    button.disabled = false;
    if (request.status === 401) {
      askForKey(apiKey ? "That key was not accepted. Enter a valid API key." : "");
      return;
    }
    const retry = request.getResponseHeader("Retry-After");
    say("upload-message", `${body.message || request.statusText}${retry ? ` (try again in ${retry} s)` : ""}`, true);
  });
  request.addEventListener("error", () => {
    button.disabled = false;
    say("upload-message", "The upload failed: the service cannot be reached.", true);
  });
  request.send(data);
}

function followProcessing(sessionId) {
  const step = async () => {
    let status;
    try {
      status = await api(`/sessions/${encodeURIComponent(sessionId)}/status`);
    } catch (error) {
      if (error.status !== 401) polling = setTimeout(step, POLL_MS * 2);
      return;
    }
    $("process-progress").value = status.progress;
    $("process-label").textContent = `Processing: ${status.processingStatus} (${status.progress} %)`;
    if (status.sessionStatus === "complete") {
      finishUpload(sessionId);
    } else if (status.sessionStatus === "error") {
      $("upload-button").disabled = false;
      say("upload-message", `Processing failed: ${status.lastError || "unknown error"}`, true);
      loadSessions();
    } else {
      polling = setTimeout(step, POLL_MS);
    }
  };
  step();
}

function finishUpload(sessionId) {
  $("upload-button").disabled = false;
  $("upload-form").reset();
  $("file-name").textContent = "";
  $("progress-box").hidden = true;
  say("upload-message", "Processed.");
  location.hash = `#/sessions/${encodeURIComponent(sessionId)}`;
}

// --------------------------------------------------------------------------- one session

async function openSession(sessionId) {
  let session;
  try {
    session = await api(`/sessions/${encodeURIComponent(sessionId)}`);
  } catch (error) {
    if (error.status === 401) return;
    show("home-view");
    say("upload-message", error.status === 404 ? "That session does not exist (or was deleted)." : error.message, true);
    loadSessions();
    return;
  }
  current = session;
  show("session-view");
  renderSession(session);
  $("session-title").focus();
  if (session.status === "processing" && session.processingStatus !== "processing") {
    polling = setTimeout(() => route(), POLL_MS * 2); // still being processed: look again
  }
}

function renderSession(session) {
  document.title = `${session.title} · Claude Scope`;
  $("session-title").textContent = session.title;
  $("session-title").setAttribute("tabindex", "-1");
  $("rename-input").value = session.title;
  const parts = [session.status === "processing" ? `${session.processingStatus} (${session.progress} %)` : session.status,
    `${session.duration} s of video`, `${session.frameCount} key frames`, `created ${when(session.createdAt)}`];
  if (session.seedUrl) parts.push(`starts at ${session.seedUrl}`);
  $("session-meta").textContent = parts.join(" · ");
  say("session-message", session.lastError ? `Error: ${session.lastError}` : "", Boolean(session.lastError));
  $("warnings").hidden = session.warnings.length === 0;
  $("warning-list").replaceChildren(...session.warnings.map((text) => el("li", {}, text)));
  renderSteps(session);
  frameIndex = 0;
  showFrame(0);
  renderPrompt(session);
  renderPages(session);
}

function frameOf(session, step) {
  const byId = session.frames.findIndex((frame) => frame.id === step.frameId);
  if (byId >= 0) return byId;
  return Number.isInteger(step.frameIndex) && step.frameIndex < session.frames.length ? step.frameIndex : -1;
}

function renderSteps(session) {
  const items = session.steps.map((step) => {
    const index = frameOf(session, step);
    const frame = index >= 0 ? session.frames[index] : null;
    const element = step.target ? `${step.target.role} “${step.target.name}”` : null;
    const thumb = frame
      ? el("button", { type: "button", class: "thumb", "aria-label": `Show the key frame of step ${step.index}`,
                       onclick: () => { showFrame(index); $("viewer").scrollIntoView({ block: "nearest" }); } },
          el("img", { src: frame.thumbnailUrl, alt: `Key frame at ${seconds(frame.timestamp)}`, loading: "lazy" }))
      : el("span");
    return el("li", {},
      el("span", { class: "when" }, seconds(step.timestamp)),
      el("div", { class: "what" }, el("span", { class: "action" }, step.action), " — ", step.description,
         element ? el("span", { class: "element" }, `Element: ${element}`) : null),
      thumb);
  });
  $("step-list").replaceChildren(...items);
  $("steps-empty").hidden = items.length !== 0;
}

function showFrame(index) {
  const frames = current ? current.frames : [];
  const image = $("viewer-image");
  $("prev-frame").disabled = index <= 0;
  $("next-frame").disabled = index >= frames.length - 1;
  if (!frames.length) {
    image.removeAttribute("src");
    $("viewer-caption").textContent = "No key frames.";
    $("viewer-region").hidden = $("viewer-pointer").hidden = true;
    return;
  }
  frameIndex = Math.max(0, Math.min(index, frames.length - 1));
  const frame = frames[frameIndex];
  image.alt = `Key frame ${frameIndex + 1} of ${frames.length}, at ${seconds(frame.timestamp)}`;
  image.src = frame.thumbnailUrl;
  $("viewer-caption").textContent = `Frame ${frameIndex + 1} of ${frames.length} at ${seconds(frame.timestamp)}: ${frame.analysis.description}`;
  if (image.complete && image.naturalWidth) placeMarks();
}

function placeMarks() {
  const frame = current && current.frames[frameIndex];
  const image = $("viewer-image");
  if (!frame || !image.naturalWidth) return;
  const x = (value) => `${(value / image.naturalWidth) * 100}%`;
  const y = (value) => `${(value / image.naturalHeight) * 100}%`;
  const region = $("viewer-region");
  region.hidden = !frame.changedRegion;
  if (frame.changedRegion) {
    region.style.left = x(frame.changedRegion.x);
    region.style.top = y(frame.changedRegion.y);
    region.style.width = x(frame.changedRegion.width);
    region.style.height = y(frame.changedRegion.height);
  }
  const pointer = $("viewer-pointer");
  pointer.hidden = !frame.pointer;
  if (frame.pointer) {
    pointer.style.left = x(frame.pointer.x);
    pointer.style.top = y(frame.pointer.y);
  }
}

$("viewer-image").addEventListener("load", placeMarks);
$("prev-frame").addEventListener("click", () => showFrame(frameIndex - 1));
$("next-frame").addEventListener("click", () => showFrame(frameIndex + 1));

function renderPrompt(session) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.target === session.agentTarget;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  $("prompt-panel").setAttribute("aria-labelledby", `tab-${session.agentTarget}`);
  $("prompt-text").textContent = session.prompt;
  $("copy-message").textContent = "";
}

async function chooseTarget(tab) {
  if (!current || tab.dataset.target === current.agentTarget) return;
  $("prompt-text").textContent = "Writing the prompt…";
  try {
    current = await api(`/sessions/${encodeURIComponent(current.id)}`,
                        { method: "PATCH", json: { agentTarget: tab.dataset.target } });
  } catch (error) {
    if (error.status !== 401) $("copy-message").textContent = `Could not switch: ${error.message}`;
    return;
  }
  renderPrompt(current);
}

const tabs = [...document.querySelectorAll("[role=tab]")];
for (const tab of tabs) {
  tab.addEventListener("click", () => chooseTarget(tab));
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    next.focus();
    chooseTarget(next);
  });
}

$("copy-button").addEventListener("click", async () => {
  const text = $("prompt-text").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-message").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("prompt-text"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-message").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});

function renderPages(session) {
  const snapshots = (session.inspection && session.inspection.snapshots) || [];
  const list = (heading, lines) => lines.length
    ? [el("p", {}, heading), el("ul", {}, ...lines.map((line) => el("li", {}, line)))] : [];
  const pages = snapshots.map((snapshot) => el("div", { class: "page" },
    el("h3", {}, snapshot.url),
    el("p", { class: snapshot.success ? "hint" : "error" }, snapshot.success
      ? `HTTP ${snapshot.httpStatus ?? "?"} · “${snapshot.title}” · ${snapshot.loadTimeMs} ms · ${snapshot.counts.total} elements`
      : `Could not be inspected: ${snapshot.error || "unknown error"}`),
    ...list(`Console errors (${snapshot.consoleErrors.length})`, snapshot.consoleErrors),
    ...list(`Failed requests (${snapshot.failedRequests.length}; to other hosts they may be the environment)`,
            snapshot.failedRequests)));
  $("page-list").replaceChildren(...(pages.length ? pages : [el("p", {}, "No page was inspected.")]));
}

$("rename-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const title = $("rename-input").value.trim();
  if (!current || !title) return;
  try {
    current = await api(`/sessions/${encodeURIComponent(current.id)}`, { method: "PATCH", json: { title } });
  } catch (error) {
    if (error.status !== 401) say("session-message", `Could not rename: ${error.message}`, true);
    return;
  }
  $("session-title").textContent = current.title;
  document.title = `${current.title} · Claude Scope`;
  say("session-message", "Title saved.");
});

$("delete-button").addEventListener("click", () => {
  if (current) removeSession(current, () => { location.hash = "#/"; });
});

start();
