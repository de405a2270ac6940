// The dashboard: sign in (JWT), upload, start tasks, and follow all of them over ONE stream.
// Plain ES module, no build step; the stream client is clients/js bundled into
// audio-tasks-client.js (`npm run build` in clients/js). Nothing is loaded from the internet.
import { createTokenManager, subscribeToAllTasks, TokenRefreshError } from "./audio-tasks-client.js";
import { errorText, formatDuration, formatEta, UNREACHABLE } from "./format.js";

const API = "/api/v1";
const STORAGE_KEY = "audio-tasks.tokens";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const kinds = JSON.parse($("task-kinds").textContent);

/** Everything the page knows: tokens, the stream, and each task's latest JSON. */
const state = {
  tokens: null, // createTokenManager(...)
  stopRefresh: null,
  stream: null,
  username: "",
  audio: new Map(), // id -> audio JSON
  tasks: new Map(), // task id -> {task, row}
  loaded: new Set(), // task ids whose result is drawn
  deleted: new Set(), // task ids removed from the page (task ids are never reused)
  wasDisconnected: false,
};

// ------------------------------------------------------------------ auth

function saveTokens(tokens) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ ...tokens, username: state.username }));
}

function startSession(access, refresh) {
  state.tokens = createTokenManager({ access, refresh, onTokens: saveTokens });
  saveTokens({ access, refresh });
  // Refresh the access token a minute before it expires, whether or not anything is running.
  state.stopRefresh = state.tokens.keepFresh();
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.username;
  loadUsage();
  loadAudio();
  loadTasks();
  openStream();
}

function signOut(message = "") {
  state.stream?.close();
  state.stopRefresh?.();
  state.stream = null;
  state.tokens = null;
  sessionStorage.removeItem(STORAGE_KEY);
  state.tasks.clear();
  state.loaded.clear();
  state.deleted.clear();
  $("tasks").replaceChildren();
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  setConnection("signed-out", "Signed out");
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("sign-in-error").textContent = "";
  try {
    const res = await fetch(`${API}/auth/token/`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    if (!res.ok) {
      $("sign-in-error").textContent = res.status === 401 ? "Wrong user name or password." : await errorText(res);
      return;
    }
    const { access, refresh } = await res.json();
    state.username = String(form.get("username"));
    event.target.reset();
    startSession(access, refresh);
  } catch {
    $("sign-in-error").textContent = UNREACHABLE;
  }
});

// Signing out revokes every refresh token of the user on the server (all their sessions).
$("sign-out").addEventListener("click", async () => {
  try {
    await api("/auth/logout/", { method: "POST" });
  } catch {
    // Offline or already expired: the tokens are dropped here all the same.
  }
  signOut();
});

/** Show how much of the storage quota the user's uploads and outputs take. */
async function loadUsage() {
  try {
    const { storage } = await api("/auth/me/");
    const used = formatBytes(storage.used_bytes);
    $("storage").textContent = storage.quota_bytes === null ? `${used} stored` : `${used} of ${formatBytes(storage.quota_bytes)} stored`;
    $("storage").dataset.full = String(storage.available_bytes === 0);
  } catch {
    // Shown again after the next upload or finished task.
  }
}

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** fetch() under /api/v1 with a fresh access token; signs out when the session is over. */
async function api(path, { method = "GET", json, raw = false } = {}) {
  let token;
  try {
    token = await state.tokens.access();
  } catch (err) {
    if (err instanceof TokenRefreshError) signOut("Your session expired; please sign in again.");
    throw err;
  }
  const headers = { Authorization: `Bearer ${token}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch {
    throw new Unreachable();
  }
  if (raw) return res;
  if (!res.ok) throw new Error(await errorText(res));
  return res.status === 204 ? null : res.json();
}

/** A request that got no answer: its message clears by itself once the stream is live again. */
class Unreachable extends Error {
  constructor() {
    super(UNREACHABLE);
  }
}

/** Show an error under a form or row; one caused by a lost connection clears on recovery. */
function showError(element, err, what = "") {
  const transient = err instanceof Unreachable;
  element.textContent = transient ? err.message : what + err.message;
  if (transient) element.dataset.transient = "true";
  else delete element.dataset.transient;
}

/** Clear the errors the lost connection caused: it is back. */
function clearTransientErrors() {
  for (const element of document.querySelectorAll(".error[data-transient]")) {
    element.textContent = "";
    delete element.dataset.transient;
  }
}

// ---------------------------------------------------------------- stream

function setConnection(status, text, detail = "") {
  const el = $("connection");
  el.dataset.status = status;
  el.textContent = text;
  el.title = detail;
}

function openStream() {
  state.stream?.close();
  setConnection("connecting", "Connecting…");
  state.stream = subscribeToAllTasks({
    getToken: state.tokens.getToken,
    onProgress: (progress) => onProgress(progress),
    onComplete: (progress) => onProgress(progress),
    onDeleted: (taskId) => removeTask(taskId),
    onStatus: (status, reason) => {
      if (status === "live") {
        setConnection("live", "Live");
        clearTransientErrors();
        if (state.wasDisconnected) loadTasks(); // catch up on anything the replay does not cover
        state.wasDisconnected = false;
      } else if (status === "reconnecting") {
        state.wasDisconnected = true;
        setConnection("reconnecting", "Disconnected — reconnecting…", reason?.message ?? "");
      } else if (status === "connecting") {
        setConnection("connecting", "Connecting…");
      }
    },
    onError: (error) => {
      if (error.code === "unauthenticated") signOut("Your session expired; please sign in again.");
      else setConnection("error", `Updates stopped: ${error.message}`);
    },
  });
}

function onProgress(progress) {
  if (state.deleted.has(progress.task_id)) return; // a late event of a task deleted here
  const entry = state.tasks.get(progress.task_id);
  if (!entry) {
    // A task created elsewhere (another tab, a script): show it at once, then fetch the rest
    // (kind, audio file) once.
    upsertTask({ id: progress.task_id, ...progress });
    refreshTask(progress.task_id);
    return;
  }
  const task = { ...entry.task, ...progress };
  const becameCompleted = task.state === "completed" && entry.task.state !== "completed";
  const restarted = !TERMINAL.has(task.state) && TERMINAL.has(entry.task.state);
  entry.task = task;
  if (restarted) state.loaded.delete(task.id);
  renderTask(entry);
  // The stream carries TaskProgress only; the task JSON has the result and artifact links.
  if (becameCompleted) {
    refreshTask(task.id);
    loadUsage(); // its output now counts against the quota
  }
}

/** Read a task's full JSON and merge it in; a 404 means it is gone. */
async function refreshTask(taskId) {
  try {
    const res = await api(`/tasks/${encodeURIComponent(taskId)}/`, { raw: true });
    if (res.status === 404) removeTask(taskId);
    else if (res.ok) upsertTask(await res.json());
  } catch {
    // Offline: the stream's reconnect reloads the list.
  }
}

// ----------------------------------------------------------------- tasks

async function loadTasks() {
  try {
    const page = await api("/tasks/?page_size=100");
    const ids = new Set(page.results.map((t) => t.id));
    for (const id of [...state.tasks.keys()]) if (!ids.has(id)) removeTask(id);
    // Oldest first, so that each new task is inserted on top.
    for (const task of page.results.reverse()) upsertTask(task);
  } catch {
    // The stream's reconnect will call this again.
  }
}

function upsertTask(task) {
  let entry = state.tasks.get(task.id);
  if (!entry) {
    const row = $("task-template").content.firstElementChild.cloneNode(true);
    row.dataset.taskId = task.id;
    row.querySelector("progress").setAttribute("aria-label", `Progress of ${task.id}`);
    row.querySelector(".actions").addEventListener("click", (event) => {
      const action = event.target.closest("button")?.dataset.action;
      if (action) act(task.id, action, event.target);
    });
    row.querySelector("[data-action=download]").addEventListener("click", () => download(task.id));
    entry = { task, row };
    state.tasks.set(task.id, entry);
    $("tasks").prepend(row);
  } else if (!entry.task.updated_at || Date.parse(task.updated_at) >= Date.parse(entry.task.updated_at)) {
    entry.task = { ...entry.task, ...task };
  } else {
    // An older read (fetched before the stream's last event) only fills in missing fields,
    // so a bar never moves back.
    entry.task = { ...task, ...entry.task };
  }
  renderTask(entry);
  $("no-tasks").hidden = state.tasks.size > 0;
}

function removeTask(taskId) {
  state.deleted.add(taskId);
  const entry = state.tasks.get(taskId);
  if (!entry) return;
  entry.row.remove();
  state.tasks.delete(taskId);
  state.loaded.delete(taskId);
  $("no-tasks").hidden = state.tasks.size > 0;
}

function renderTask({ task, row }) {
  const audio = state.audio.get(task.audio_file);
  row.dataset.state = task.state;
  row.querySelector(".task-name").textContent = audio ? audio.original_name : task.id;
  row.querySelector(".task-name").title = task.id;
  row.querySelector(".task-kind").textContent = task.kind ?? "";
  row.querySelector(".state").textContent = task.state;
  row.querySelector(".stage").textContent = task.stage && !TERMINAL.has(task.state) ? task.stage : "";
  row.querySelector(".eta").textContent = formatEta(task.estimated_time);
  const value = Number(task.progress ?? 0);
  row.querySelector("progress").value = value;
  row.querySelector(".percent").textContent = `${value.toFixed(value === 100 || value === 0 ? 0 : 1)} %`;
  row.querySelector(".task-error").textContent = task.state === "failed" ? task.error ?? "Failed." : "";
  row.querySelector("[data-action=cancel]").hidden = TERMINAL.has(task.state);
  row.querySelector("[data-action=retry]").hidden = !(task.state === "failed" || task.state === "cancelled");
  const result = row.querySelector(".result");
  result.hidden = task.state !== "completed";
  if (task.state === "completed" && task.result && !state.loaded.has(task.id)) {
    state.loaded.add(task.id);
    showResult(task, row);
  }
}


async function act(taskId, action, button) {
  if (action === "download") return;
  if (action === "delete" && !confirm("Delete this task and its files?")) return;
  button.disabled = true;
  try {
    if (action === "delete") {
      await api(`/tasks/${encodeURIComponent(taskId)}/`, { method: "DELETE" });
      removeTask(taskId);
      loadUsage();
    } else {
      upsertTask(await api(`/tasks/${encodeURIComponent(taskId)}/${action}/`, { method: "POST" }));
    }
  } catch (err) {
    const entry = state.tasks.get(taskId);
    if (entry) showError(entry.row.querySelector(".task-error"), err);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- results

const FIGURES = [
  ["integrated_lufs", "Integrated", "LUFS"],
  ["loudness_range_lu", "Loudness range", "LU"],
  ["momentary_max_lufs", "Max momentary", "LUFS"],
  ["short_term_max_lufs", "Max short-term", "LUFS"],
  ["true_peak_dbtp", "True peak", "dBTP"],
  ["sample_peak_dbfs", "Sample peak", "dBFS"],
  ["rms_dbfs", "RMS", "dBFS"],
];

function figures(list, measures, prefix = "") {
  for (const [key, label, unit] of FIGURES) {
    if (measures?.[key] === undefined) continue;
    const item = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = prefix + label;
    dd.textContent = measures[key] === null ? "—" : `${measures[key].toFixed(1)} ${unit}`;
    dd.dataset.figure = prefix ? `${prefix.trim()}-${key}` : key;
    item.append(dt, dd);
    list.append(item);
  }
}

async function showResult(task, row) {
  const list = row.querySelector(".figures");
  list.replaceChildren();
  const result = task.result ?? {};
  if (result.loudness) figures(list, result.loudness);
  if (result.input && result.output) {
    figures(list, result.input, "In: ");
    figures(list, result.output, "Out: ");
  }
  row.querySelector("[data-action=download]").hidden = !task.output_url;
  const canvas = row.querySelector("canvas");
  canvas.hidden = !task.waveform_json_url;
  if (!task.waveform_json_url) return;
  canvas.setAttribute("aria-label", `Waveform of ${task.id}`);
  try {
    const res = await api(`/tasks/${encodeURIComponent(task.id)}/waveform.json`, { raw: true });
    if (!res.ok) throw new Error(await errorText(res));
    drawWaveform(canvas, await res.json());
    canvas.dataset.drawn = "true";
  } catch (err) {
    showError(row.querySelector(".task-error"), err, "Waveform: ");
    state.loaded.delete(task.id);
  }
}

/** Draw BBC audiowaveform JSON (min/max pairs) scaled to the canvas width. */
function drawWaveform(canvas, wave) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const full = 2 ** ((wave.bits ?? 16) - 1);
  const step = 2 * (wave.channels ?? 1);
  const points = Math.floor(wave.data.length / step);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = getComputedStyle(canvas).getPropertyValue("--wave").trim() || "#2563eb";
  const mid = height / 2;
  for (let x = 0; x < width; x += 1) {
    const from = Math.floor((x * points) / width);
    const to = Math.max(from + 1, Math.floor(((x + 1) * points) / width));
    let lo = 0;
    let hi = 0;
    for (let i = from; i < to && i < points; i += 1) {
      lo = Math.min(lo, wave.data[i * step]);
      hi = Math.max(hi, wave.data[i * step + 1]);
    }
    const top = mid - (hi / full) * mid;
    const bottom = mid - (lo / full) * mid;
    ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
}

async function download(taskId) {
  try {
    const res = await api(`/tasks/${encodeURIComponent(taskId)}/output`, { raw: true });
    if (!res.ok) throw new Error(await errorText(res));
    const name = /filename="?([^";]+)"?/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? `${taskId}-output`;
    const url = URL.createObjectURL(await res.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showError(state.tasks.get(taskId).row.querySelector(".task-error"), err, "Download: ");
  }
}

// ---------------------------------------------------------- upload + form

async function loadAudio(selectId) {
  try {
    const page = await api("/audio/?page_size=100");
    for (const audio of page.results) state.audio.set(audio.id, audio);
  } catch {
    return;
  }
  const select = $("audio-select");
  select.replaceChildren(
    ...[...state.audio.values()]
      .sort((a, b) => b.id - a.id)
      .map((audio) => new Option(`${audio.original_name} (${formatDuration(audio.duration)})`, audio.id)),
  );
  if (selectId) select.value = String(selectId);
  for (const entry of state.tasks.values()) renderTask(entry);
}


async function upload(file) {
  $("upload-error").textContent = "";
  $("upload").hidden = false;
  $("upload-name").textContent = file.name;
  const bar = $("upload-progress");
  bar.value = 0;
  let token;
  try {
    token = await state.tokens.access();
  } catch {
    signOut("Your session expired; please sign in again.");
    return;
  }
  const body = new FormData();
  body.append("file", file);
  // XMLHttpRequest, because fetch() cannot report upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `${API}/audio/`);
  xhr.setRequestHeader("Authorization", `Bearer ${token}`);
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    bar.value = (100 * event.loaded) / event.total;
    $("upload-percent").textContent = `${Math.round(bar.value)} %`;
  });
  xhr.addEventListener("load", () => {
    if (xhr.status === 201) {
      const audio = JSON.parse(xhr.responseText);
      bar.value = 100;
      $("upload-percent").textContent = "Uploaded";
      state.audio.set(audio.id, audio);
      loadAudio(audio.id);
      loadUsage();
    } else {
      $("upload").hidden = true;
      let message = `the server refused it (HTTP ${xhr.status}).`;
      try {
        message = JSON.parse(xhr.responseText).error.message;
      } catch {
        // keep the status
      }
      $("upload-error").textContent = `Upload failed: ${message}`;
    }
  });
  xhr.addEventListener("error", () => {
    $("upload").hidden = true;
    showError($("upload-error"), new Unreachable());
  });
  xhr.send(body);
}

const dropZone = $("drop-zone");
$("file-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) upload(file);
  event.target.value = "";
});
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) upload(file);
});
dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("file-input").click();
  }
});

function renderKinds() {
  const select = $("kind-select");
  select.replaceChildren(...kinds.map((k) => new Option(k.kind, k.kind)));
  select.value = kinds.some((k) => k.kind === "analyze") ? "analyze" : kinds[0]?.kind;
  select.addEventListener("change", renderOptions);
  renderOptions();
}

function renderOptions() {
  const kind = kinds.find((k) => k.kind === $("kind-select").value);
  $("kind-description").textContent = kind?.description ?? "";
  const fieldset = $("options");
  fieldset.replaceChildren();
  const entries = Object.entries(kind?.options ?? {});
  $("options-box").hidden = entries.length === 0;
  for (const [name, option] of entries) {
    const label = document.createElement("label");
    label.append(name.replace(/_/g, " "));
    let input;
    if (option.choices) {
      input = document.createElement("select");
      input.append(...option.choices.map((c) => new Option(String(c), String(c))));
      if (option.default !== null) input.value = String(option.default);
    } else if (option.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = Boolean(option.default);
    } else {
      input = document.createElement("input");
      input.type = option.type === "string" ? "text" : "number";
      if (option.type === "integer") input.step = "1";
      if (option.type === "number") input.step = "any";
      if (option.minimum !== null) input.min = String(option.minimum);
      if (option.maximum !== null) input.max = String(option.maximum);
      input.placeholder = option.default === null ? "automatic" : String(option.default);
    }
    input.name = name;
    input.dataset.type = option.type;
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = option.help;
    label.append(input, hint);
    fieldset.append(label);
  }
}

function readOptions() {
  const options = {};
  for (const input of $("options").querySelectorAll("input, select")) {
    const type = input.dataset.type;
    if (type === "boolean") options[input.name] = input.checked;
    else if (input.value === "") continue; // the processor's default
    else if (type === "number" || type === "integer") options[input.name] = Number(input.value);
    else options[input.name] = input.value;
  }
  return options;
}

$("task-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("task-error").textContent = "";
  const audioFile = Number($("audio-select").value);
  if (!audioFile) {
    $("task-error").textContent = "Upload an audio file first.";
    return;
  }
  const button = $("start-task");
  button.disabled = true;
  try {
    const task = await api("/tasks/", {
      method: "POST",
      json: { audio_file: audioFile, kind: $("kind-select").value, options: readOptions() },
    });
    upsertTask(task);
  } catch (err) {
    showError($("task-error"), err);
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ start

renderKinds();
const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
if (saved?.access && saved?.refresh) {
  state.username = saved.username ?? "";
  startSession(saved.access, saved.refresh);
}
