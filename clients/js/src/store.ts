/**
 * Many tasks over one connection: a store fed by the all-tasks stream that any number of
 * views read (React's provider uses it; it works as well without React).
 */
import {
  subscribeToAllTasks,
  type ConnectionStatus,
  type GetToken,
  type StreamError,
  type Subscription,
  type TaskProgress,
} from "./client.js";

/** What the store knows of one task. */
export interface TaskEntry {
  /** The newest TaskProgress, or null until the first one arrives. */
  progress: TaskProgress | null;
  /** `deleted` or `not_found` when the task is gone, else null. */
  error: StreamError | null;
}

/** The connection of the store's one stream. */
export interface ConnectionState {
  status: ConnectionStatus;
  /** Why it is not live (null while `connecting`, `live` or `closed`). */
  reason: StreamError | null;
}

/** Options of {@link createTaskStore}. */
export interface TaskStoreOptions {
  getToken: GetToken;
  /** Origin of the service; default: same origin. */
  baseUrl?: string;
  fetch?: typeof fetch;
  /** See `StreamOptions.heartbeatTimeoutMs`. */
  heartbeatTimeoutMs?: number;
  /** See `StreamOptions.retryDelayMs`. */
  retryDelayMs?: { min: number; max: number };
}

/** A store of every task's progress, kept live by one all-tasks stream. */
export interface TaskStore {
  /** Open the stream (again after `close()`); a second call while open does nothing. */
  connect(): void;
  /** Close the stream; what the store knows stays readable. */
  close(): void;
  /** Call `listener` after every change; returns the function that stops it. */
  subscribe(listener: () => void): () => void;
  /** One task; the same object until that task changes. */
  get(taskId: string): TaskEntry | undefined;
  /** Every known task's newest progress; the same Map until something changes. */
  tasks(): ReadonlyMap<string, TaskProgress>;
  /** The connection; the same object until it changes. */
  connection(): ConnectionState;
  /**
   * Ask for a task to be known. The stream's snapshot holds only unfinished tasks, so a task
   * it has not mentioned once it is live is read once from `tasks/{id}/progress/`. Returns
   * the function that withdraws the request.
   */
  watch(taskId: string): () => void;
}

const API = "/api/v1";
// Reads of unknown tasks run at most this many at a time: the page keeps HTTP/1.1
// connections for its own API calls (browsers allow six per host, the stream holds one).
const READS_AT_ONCE = 2;

/** Create a store; nothing is requested until `connect()`. */
export function createTaskStore(options: TaskStoreOptions): TaskStore {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const base = options.baseUrl ?? "";
  const entries = new Map<string, TaskEntry>();
  const listeners = new Set<() => void>();
  const watched = new Map<string, number>();
  const queue: string[] = [];
  let reading = 0;
  let all: ReadonlyMap<string, TaskProgress> | null = null;
  let connection: ConnectionState = { status: "closed", reason: null };
  let subscription: Subscription | null = null;
  let reads: AbortController | null = null;

  const changed = (): void => {
    all = null;
    listeners.forEach((listener) => listener());
  };

  const put = (progress: TaskProgress): void => {
    const old = entries.get(progress.task_id)?.progress;
    // A read that crossed a newer event on the way must not move the bar back.
    if (old && Date.parse(progress.updated_at) < Date.parse(old.updated_at)) return;
    entries.set(progress.task_id, { progress, error: null });
    changed();
  };

  const gone = (taskId: string, error: StreamError): void => {
    entries.set(taskId, { progress: entries.get(taskId)?.progress ?? null, error });
    changed();
  };

  const readNext = (): void => {
    while (reading < READS_AT_ONCE && queue.length > 0 && reads) {
      const taskId = queue.shift() as string;
      if (entries.has(taskId) || !watched.has(taskId)) continue;
      reading += 1;
      void readOne(taskId, reads.signal).finally(() => {
        reading -= 1;
        readNext();
      });
    }
  };

  const readOne = async (taskId: string, signal: AbortSignal): Promise<void> => {
    try {
      const token = await options.getToken({ forceRefresh: false });
      const res = await doFetch(`${base}${API}/tasks/${encodeURIComponent(taskId)}/progress/`, {
        headers: { Authorization: `Bearer ${token}` }, cache: "no-store", signal,
      });
      if (signal.aborted) return;
      if (res.ok) put((await res.json()) as TaskProgress);
      else if (res.status === 404) gone(taskId, { code: "not_found", message: `There is no task ${taskId}.`, status: 404 });
    } catch {
      // Offline or closed: read again on the next connect.
    }
  };

  const askForUnknown = (): void => {
    for (const taskId of watched.keys()) if (!entries.has(taskId) && !queue.includes(taskId)) queue.push(taskId);
    readNext();
  };

  return {
    connect() {
      if (subscription) return;
      reads = new AbortController();
      subscription = subscribeToAllTasks({
        getToken: options.getToken,
        baseUrl: options.baseUrl,
        fetch: options.fetch,
        heartbeatTimeoutMs: options.heartbeatTimeoutMs,
        retryDelayMs: options.retryDelayMs,
        onProgress: put,
        onComplete: put,
        onDeleted: (taskId) => gone(taskId, { code: "deleted", message: "The task was deleted." }),
        onStatus: (status, reason) => {
          connection = { status, reason };
          changed();
          if (status === "live") askForUnknown();
        },
      });
    },
    close() {
      subscription?.close();
      subscription = null;
      reads?.abort();
      reads = null;
      queue.length = 0;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    get: (taskId) => entries.get(taskId),
    tasks() {
      all ??= new Map(
        [...entries].filter(([, entry]) => entry.progress && !entry.error).map(([id, entry]) => [id, entry.progress as TaskProgress]),
      );
      return all;
    },
    connection: () => connection,
    watch(taskId) {
      watched.set(taskId, (watched.get(taskId) ?? 0) + 1);
      if (connection.status === "live") askForUnknown();
      return () => {
        const count = (watched.get(taskId) ?? 1) - 1;
        if (count > 0) watched.set(taskId, count);
        else watched.delete(taskId);
      };
    },
  };
}
