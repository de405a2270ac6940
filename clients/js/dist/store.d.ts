/**
 * Many tasks over one connection: a store fed by the all-tasks stream that any number of
 * views read (React's provider uses it; it works as well without React).
 */
import { type ConnectionStatus, type GetToken, type StreamError, type TaskProgress } from "./client.js";
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
    retryDelayMs?: {
        min: number;
        max: number;
    };
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
/** Create a store; nothing is requested until `connect()`. */
export declare function createTaskStore(options: TaskStoreOptions): TaskStore;
