// A Vite app without React: the package root must bring none along.
// Query (after #): api=<service origin>&token=<access token>&task=<id>
import { subscribeToTask } from "@audio-tasks/client";

const params = new URLSearchParams(location.hash.slice(1));
const status = document.getElementById("status");
const bar = document.getElementById("bar");

subscribeToTask(params.get("task") ?? "", {
  baseUrl: params.get("api") ?? "",
  getToken: () => params.get("token") ?? "",
  onStatus: (s, reason) => {
    status.dataset.status = s;
    status.textContent = reason ? `${s}: ${reason.message}` : s;
  },
  onProgress: (p) => {
    bar.value = p.progress;
    bar.dataset.state = p.state;
  },
  onComplete: (p) => {
    bar.value = p.progress;
    bar.dataset.state = p.state;
  },
});
