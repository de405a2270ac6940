// A task's webhook deliveries on the dashboard, kept apart from dashboard.js: each finished
// task row gets a "Webhook deliveries" box that loads, when opened, what was sent about the task
// (GET /api/v1/tasks/{id}/webhook-deliveries/) and can send one again. It reads the rows the
// dashboard draws (li.task[data-task-id][data-state]) and the tokens it keeps in sessionStorage.
const API = "/api/v1";
const STORAGE_KEY = "audio-tasks.tokens";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function token() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null")?.access ?? null;
  } catch {
    return null;
  }
}

async function call(path, method = "GET") {
  const res = await fetch(API + path, { method, headers: { Authorization: `Bearer ${token()}` } });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  return td;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

async function load(box, taskId) {
  const list = box.querySelector(".webhook-list");
  const status = box.querySelector(".webhook-status");
  status.textContent = "Loading…";
  try {
    const page = await call(`/tasks/${encodeURIComponent(taskId)}/webhook-deliveries/?page_size=50`);
    const rows = page.results.map((delivery) => {
      const tr = document.createElement("tr");
      tr.dataset.status = delivery.status;
      tr.append(
        cell(when(delivery.last_attempt_at ?? delivery.created_at)),
        cell(delivery.type),
        cell(delivery.endpoint_url),
        cell(delivery.status),
        cell(delivery.last_status_code ?? (delivery.last_error || "")),
        cell(delivery.last_response_ms === null ? "" : `${delivery.last_response_ms} ms`),
        cell(delivery.next_attempt_at && delivery.status === "pending" ? `retry ${when(delivery.next_attempt_at)}` : ""),
      );
      const action = document.createElement("td");
      if (delivery.status !== "sending") {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Redeliver";
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            await call(`/webhooks/${delivery.endpoint}/deliveries/${delivery.id}/redeliver/`, "POST");
            await load(box, taskId);
          } catch (error) {
            status.textContent = error.message;
            button.disabled = false;
          }
        });
        action.append(button);
      }
      tr.append(action);
      return tr;
    });
    list.replaceChildren(...rows);
    status.textContent = rows.length ? "" : "No webhook deliveries for this task.";
  } catch (error) {
    status.textContent = error.message;
  }
}

function attach(row) {
  if (row.querySelector(".webhooks") || !TERMINAL.has(row.dataset.state)) return;
  const box = document.createElement("details");
  box.className = "webhooks";
  box.innerHTML =
    '<summary>Webhook deliveries</summary><p class="webhook-status hint" role="status"></p>' +
    "<table><thead><tr><th>Time</th><th>Event</th><th>Endpoint</th><th>Status</th><th>Answer</th>" +
    '<th>Response time</th><th>Next retry</th><th></th></tr></thead><tbody class="webhook-list"></tbody></table>';
  box.addEventListener("toggle", () => box.open && load(box, row.dataset.taskId));
  row.append(box);
}

const tasks = document.getElementById("tasks");
if (tasks) {
  const scan = () => tasks.querySelectorAll("li.task[data-task-id]").forEach(attach);
  new MutationObserver(scan).observe(tasks, { childList: true, subtree: true, attributeFilter: ["data-state"] });
  scan();
}
