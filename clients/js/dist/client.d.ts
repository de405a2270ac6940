/** A task's state; `completed`, `failed` and `cancelled` are terminal. */
export type TaskState = "pending" | "processing" | "completed" | "failed" | "cancelled";
/** The payload of `progress` and `complete` events (and of `GET tasks/{id}/progress/`). */
export interface TaskProgress {
    task_id: string;
    state: TaskState;
    /** 0–100; 100 exactly when completed. */
    progress: number;
    /** Seconds left, or null when unknown. */
    estimated_time: number | null;
    /** ISO 8601 UTC. */
    updated_at: string;
    stage: string;
    error: string | null;
    attempts?: number;
    [extra: string]: unknown;
}
/**
 * Why a connection is not live, or why a subscription stopped. `code` is the server's
 * (`deleted`, `unauthenticated`, `not_found`, …) or the client's own (see {@link ReasonCode});
 * `message` is a sentence to show a person; `status` is set for HTTP answers.
 */
export interface StreamError {
    code: string;
    message: string;
    status?: number;
    /** For a `429`: how long the client waits before it tries again (the server's `Retry-After`). */
    retryAfterMs?: number;
}
/** The client's own reason codes (the server's codes pass through unchanged). */
export type ReasonCode = "unreachable" | "cors_refused" | "connection_lost" | "silent" | "unauthenticated" | "not_found" | "too_many_streams" | "server_error";
/**
 * Connection state, for a status badge:
 * - `connecting`: the first request is on its way;
 * - `live`: the stream is open and events arrive as they happen;
 * - `reconnecting`: the connection is down and the client is retrying (the reason says why);
 * - `closed`: the subscription ended normally (`complete`, `204`, or `close()`);
 * - `error`: it stopped for a reason retrying cannot fix (the reason says which).
 */
export type ConnectionStatus = "connecting" | "live" | "reconnecting" | "closed" | "error";
/** Called on every change of status; `reason` is null while `connecting`, `live` or `closed`. */
export type StatusListener = (status: ConnectionStatus, reason: StreamError | null) => void;
/**
 * Returns a valid access token. `forceRefresh` is true when the server refused the last one
 * (HTTP 401 or an `unauthenticated` event) or it is about to expire: fetch a new one then.
 */
export type GetToken = (options: {
    forceRefresh: boolean;
}) => string | Promise<string>;
/** Options shared by both kinds of subscription. */
export interface StreamOptions {
    getToken: GetToken;
    /**
     * Every `progress` event (the first one is the snapshot of the current state), except
     * replayed events older than a state already delivered (see the README).
     */
    onProgress?: (progress: TaskProgress) => void;
    /** A `complete` event: the task ended (check `state`). The per-task stream stops after it. */
    onComplete?: (progress: TaskProgress) => void;
    /** The subscription stopped because of `error` (status `error`; not called after `close()`). */
    onError?: (error: StreamError) => void;
    /** Every change of connection status, with the reason while it is not live. */
    onStatus?: StatusListener;
    /** Origin of the service, e.g. `https://audio.example.com`; default: same origin. */
    baseUrl?: string;
    /** Resume after this event id (e.g. kept across a page reload). */
    lastEventId?: string;
    /** Reconnect this many seconds before the access token expires (default 30). */
    refreshMarginSeconds?: number;
    /** First and largest reconnect delay in ms (default 250 and 5000; doubles per failure). */
    retryDelayMs?: {
        min: number;
        max: number;
    };
    /**
     * Reconnect when nothing (not even a keep-alive) arrived for this long: the connection is
     * dead without having been closed. The server sends a keep-alive after
     * `SSE_KEEPALIVE_SECONDS` (15 s) of silence; the default, 20000 ms, is that plus a margin.
     */
    heartbeatTimeoutMs?: number;
    /** The fetch implementation (tests, polyfills); default `globalThis.fetch`. */
    fetch?: typeof fetch;
}
/** Options of the all-tasks stream. */
export interface AllTasksOptions extends StreamOptions {
    /** A task of the caller was deleted (the all-tasks stream continues). */
    onDeleted?: (taskId: string) => void;
}
/** A live subscription. */
export interface Subscription {
    /** Stop for good: aborts the request and cancels timers; no callback runs afterwards. */
    close(): void;
    /** Id of the last event received, to resume from later. */
    readonly lastEventId: string | null;
}
/** Follow one task until `complete`, a final `error`, a `204`, a `404` or `close()`. */
export declare function subscribeToTask(taskId: string, options: StreamOptions): Subscription;
/** Follow every task of the caller over one connection (dashboards); runs until `close()`. */
export declare function subscribeToAllTasks(options: AllTasksOptions): Subscription;
/** Expiry of a JWT in ms since the epoch, or null when the token is not a readable JWT. */
export declare function tokenExpiry(token: string): number | null;
/** Raised by the token manager when the refresh token itself is refused. */
export declare class TokenRefreshError extends Error {
    readonly status?: number | undefined;
    constructor(message: string, status?: number | undefined);
}
/** Options of {@link createTokenManager}. */
export interface TokenManagerOptions {
    access: string;
    refresh: string;
    baseUrl?: string;
    /** Refresh when the access token has less than this many seconds left (default 60). */
    marginSeconds?: number;
    /** Called with the new pair after each refresh (to persist it). */
    onTokens?: (tokens: {
        access: string;
        refresh: string;
    }) => void;
    fetch?: typeof fetch;
}
/** A token manager: a `getToken` for the subscriptions that refreshes via `auth/token/refresh/`. */
export interface TokenManager {
    getToken: GetToken;
    /** Access token, refreshed first when it expires within the margin. */
    access(): Promise<string>;
    /** Schedule a refresh `marginSeconds` before expiry (call once; returns a cancel function). */
    keepFresh(): () => void;
}
/** Keep a simplejwt access/refresh pair fresh; concurrent refreshes share one request. */
export declare function createTokenManager(options: TokenManagerOptions): TokenManager;
/** `Retry-After` (seconds or an HTTP date) in ms; 5 s when absent or unreadable. */
export declare function retryAfterMs(header: string | null): number;
