/**
 * Many tasks over one connection: a store fed by the all-tasks stream that any number of
 * views read (React's provider uses it; it works as well without React).
 */
import { subscribeToAllTasks, } from "./client.js";
const API = "/api/v1";
// Reads of unknown tasks run at most this many at a time: the page keeps HTTP/1.1
// connections for its own API calls (browsers allow six per host, the stream holds one).
const READS_AT_ONCE = 2;
/** Create a store; nothing is requested until `connect()`. */
export function createTaskStore(options) {
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const base = options.baseUrl ?? "";
    const entries = new Map();
    const listeners = new Set();
    const watched = new Map();
    const queue = [];
    let reading = 0;
    let all = null;
    let connection = { status: "closed", reason: null };
    let subscription = null;
    let reads = null;
    const changed = () => {
        all = null;
        listeners.forEach((listener) => listener());
    };
    const put = (progress) => {
        const old = entries.get(progress.task_id)?.progress;
        // A read that crossed a newer event on the way must not move the bar back.
        if (old && Date.parse(progress.updated_at) < Date.parse(old.updated_at))
            return;
        entries.set(progress.task_id, { progress, error: null });
        changed();
    };
    const gone = (taskId, error) => {
        entries.set(taskId, { progress: entries.get(taskId)?.progress ?? null, error });
        changed();
    };
    const readNext = () => {
        while (reading < READS_AT_ONCE && queue.length > 0 && reads) {
            const taskId = queue.shift();
            if (entries.has(taskId) || !watched.has(taskId))
                continue;
            reading += 1;
            void readOne(taskId, reads.signal).finally(() => {
                reading -= 1;
                readNext();
            });
        }
    };
    const readOne = async (taskId, signal) => {
        try {
            const token = await options.getToken({ forceRefresh: false });
            const res = await doFetch(`${base}${API}/tasks/${encodeURIComponent(taskId)}/progress/`, {
                headers: { Authorization: `Bearer ${token}` }, cache: "no-store", signal,
            });
            if (signal.aborted)
                return;
            if (res.ok)
                put((await res.json()));
            else if (res.status === 404)
                gone(taskId, { code: "not_found", message: `There is no task ${taskId}.`, status: 404 });
        }
        catch {
            // Offline or closed: read again on the next connect.
        }
    };
    const askForUnknown = () => {
        for (const taskId of watched.keys())
            if (!entries.has(taskId) && !queue.includes(taskId))
                queue.push(taskId);
        readNext();
    };
    return {
        connect() {
            if (subscription)
                return;
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
                    if (status === "live")
                        askForUnknown();
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
            all ?? (all = new Map([...entries].filter(([, entry]) => entry.progress && !entry.error).map(([id, entry]) => [id, entry.progress])));
            return all;
        },
        connection: () => connection,
        watch(taskId) {
            watched.set(taskId, (watched.get(taskId) ?? 0) + 1);
            if (connection.status === "live")
                askForUnknown();
            return () => {
                const count = (watched.get(taskId) ?? 1) - 1;
                if (count > 0)
                    watched.set(taskId, count);
                else
                    watched.delete(taskId);
            };
        },
    };
}
