// A React app as a frontend team would write it: StrictMode, one provider, a bar per task.
// Query (after #): api=<service origin>&token=<access token>&tasks=<id,id,…>
import { StrictMode, useState, version } from "react";
import { createRoot } from "react-dom/client";
import type { GetToken } from "@audio-tasks/client";
import { TaskProgressProvider, useConnectionStatus, useTaskProgress } from "@audio-tasks/client/react";

const params = new URLSearchParams(location.hash.slice(1));
const api = params.get("api") ?? "";
const token = params.get("token") ?? "";
const taskIds = (params.get("tasks") ?? "").split(",").filter(Boolean);
const getToken: GetToken = () => token;

function Bar({ id }: { id: string }) {
  const { progress, isComplete, error } = useTaskProgress(id);
  return (
    <li data-task-id={id} data-state={progress?.state ?? "unknown"} data-complete={String(isComplete)}>
      <progress max={100} value={progress?.progress ?? 0} aria-label={id} /> {progress ? `${progress.progress} %` : "…"}
      {error && <span className="error"> {error.message}</span>}
    </li>
  );
}

function Connection() {
  const { status, reason } = useConnectionStatus();
  return <p id="status" data-status={status}>{status}{reason && `: ${reason.message}`}</p>;
}

function ApiCheck() {
  const [answer, setAnswer] = useState("");
  const check = async (): Promise<void> => {
    const res = await fetch(`${api}/api/v1/tasks/?page_size=1`, { headers: { Authorization: `Bearer ${token}` } });
    const body = (await res.json()) as { count: number };
    setAnswer(`API answered: ${body.count} tasks`);
  };
  return <p><button type="button" onClick={() => void check()}>Check the API</button> <output id="api">{answer}</output></p>;
}

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <TaskProgressProvider getToken={getToken} baseUrl={api}>
      <p id="react">React {version}</p>
      <Connection />
      <ApiCheck />
      <ul>{taskIds.map((id) => <Bar key={id} id={id} />)}</ul>
    </TaskProgressProvider>
  </StrictMode>,
);
