/**
 * React bindings (`@audio-tasks/client/react`): a provider that follows every task over one
 * stream, and hooks that read it; `useTaskProgress(id, getToken)` also works alone.
 */
import { type ReactElement, type ReactNode } from "react";
import { type ConnectionStatus, type GetToken, type StreamError, type TaskProgress } from "./client.js";
import { type ConnectionState } from "./store.js";
/** What {@link useTaskProgress} returns. */
export interface TaskProgressState {
    /** The newest TaskProgress, or null before the first event. */
    progress: TaskProgress | null;
    /** True once the task ended (completed, failed or cancelled); check `progress.state`. */
    isComplete: boolean;
    /** Why following the task stopped (`deleted`, `not_found`, `unauthenticated`, …), else null. */
    error: StreamError | null;
    /** The connection: `connecting`, `live`, `reconnecting`, `closed` or `error`. */
    status: ConnectionStatus;
    /** Why the connection is not live (a sentence in `reason.message`), else null. */
    reason: StreamError | null;
}
/** Options of {@link useTaskProgress} when it opens its own stream. */
export interface UseTaskProgressOptions {
    baseUrl?: string;
    fetch?: typeof fetch;
    heartbeatTimeoutMs?: number;
}
/** Props of {@link TaskProgressProvider}. */
export interface TaskProgressProviderProps extends UseTaskProgressOptions {
    /** Gives an access token; may change identity between renders without reopening the stream. */
    getToken: GetToken;
    children?: ReactNode;
}
/** What {@link useTasksProgress} returns. */
export interface TasksProgressState extends ConnectionState {
    /** Every task the stream has told of, by id (deleted tasks leave it). */
    tasks: ReadonlyMap<string, TaskProgress>;
}
/**
 * Follow every task of the signed-in user over ONE all-tasks stream (browsers allow six
 * HTTP/1.1 connections per host), for the hooks below it. Mount it once, high in the tree.
 */
export declare function TaskProgressProvider({ getToken, baseUrl, fetch, heartbeatTimeoutMs, children }: TaskProgressProviderProps): ReactElement;
/** Every task's progress and the connection, from the provider's one stream. */
export declare function useTasksProgress(): TasksProgressState;
/** The provider's connection: `{status, reason}`, for a status badge. */
export declare function useConnectionStatus(): ConnectionState;
/**
 * Follow one task. Without `getToken` it reads the provider's shared stream (any number of
 * bars, one connection); with `getToken` it opens the task's own stream, closed on unmount
 * and when `taskId` changes (React strict mode's double effect leaves exactly one).
 */
export declare function useTaskProgress(taskId: string | null | undefined, getToken?: GetToken, options?: UseTaskProgressOptions): TaskProgressState;
export type { ConnectionState, ConnectionStatus, StreamError, TaskProgress };
