/**
 * React bindings (`@audio-tasks/client/react`): a provider that follows every task over one
 * stream, and hooks that read it; `useTaskProgress(id, getToken)` also works alone.
 */
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore, } from "react";
import { subscribeToTask, } from "./client.js";
import { createTaskStore } from "./store.js";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const INITIAL = { progress: null, isComplete: false, error: null, status: "connecting", reason: null };
const IDLE = { status: "closed", reason: null };
const StoreContext = createContext(null);
const noSubscription = () => () => undefined;
/**
 * Follow every task of the signed-in user over ONE all-tasks stream (browsers allow six
 * HTTP/1.1 connections per host), for the hooks below it. Mount it once, high in the tree.
 */
export function TaskProgressProvider({ getToken, baseUrl, fetch, heartbeatTimeoutMs, children }) {
    const tokenRef = useRef(getToken);
    tokenRef.current = getToken;
    const store = useMemo(() => createTaskStore({ getToken: (opts) => tokenRef.current(opts), baseUrl, fetch, heartbeatTimeoutMs }), [baseUrl, fetch, heartbeatTimeoutMs]);
    useEffect(() => {
        // Strict mode's mount–unmount–mount closes the first stream before it sends a request.
        store.connect();
        return () => store.close();
    }, [store]);
    return createElement(StoreContext.Provider, { value: store }, children);
}
function useStore(hook) {
    const store = useContext(StoreContext);
    if (!store)
        throw new Error(`${hook} needs a <TaskProgressProvider> above it.`);
    return store;
}
/** Every task's progress and the connection, from the provider's one stream. */
export function useTasksProgress() {
    const store = useStore("useTasksProgress()");
    const tasks = useSyncExternalStore(store.subscribe, store.tasks, store.tasks);
    const connection = useSyncExternalStore(store.subscribe, store.connection, store.connection);
    return useMemo(() => ({ tasks, ...connection }), [tasks, connection]);
}
/** The provider's connection: `{status, reason}`, for a status badge. */
export function useConnectionStatus() {
    const store = useStore("useConnectionStatus()");
    return useSyncExternalStore(store.subscribe, store.connection, store.connection);
}
/**
 * Follow one task. Without `getToken` it reads the provider's shared stream (any number of
 * bars, one connection); with `getToken` it opens the task's own stream, closed on unmount
 * and when `taskId` changes (React strict mode's double effect leaves exactly one).
 */
export function useTaskProgress(taskId, getToken, options = {}) {
    const context = useContext(StoreContext);
    const shared = getToken === undefined;
    if (shared && !context)
        throw new Error("useTaskProgress(taskId) without getToken needs a <TaskProgressProvider> above it.");
    const store = shared ? context : null;
    // Its own stream (with getToken).
    const [own, setOwn] = useState(INITIAL);
    const tokenRef = useRef(getToken);
    tokenRef.current = getToken;
    const { baseUrl, fetch, heartbeatTimeoutMs } = options;
    useEffect(() => {
        setOwn(INITIAL);
        if (shared || !taskId)
            return undefined;
        const subscription = subscribeToTask(taskId, {
            getToken: (opts) => tokenRef.current(opts),
            baseUrl,
            fetch,
            heartbeatTimeoutMs,
            onProgress: (progress) => setOwn((s) => ({ ...s, progress })),
            onComplete: (progress) => setOwn((s) => ({ ...s, progress, isComplete: true, error: null })),
            onError: (error) => setOwn((s) => ({ ...s, error })),
            onStatus: (status, reason) => setOwn((s) => ({ ...s, status, reason })),
        });
        return () => subscription.close();
    }, [shared, taskId, baseUrl, fetch, heartbeatTimeoutMs]);
    // The provider's stream (without getToken).
    const subscribe = store ? store.subscribe : noSubscription;
    const readEntry = useCallback(() => (store && taskId ? store.get(taskId) : undefined), [store, taskId]);
    const readConnection = useCallback(() => (store ? store.connection() : IDLE), [store]);
    const entry = useSyncExternalStore(subscribe, readEntry, readEntry);
    const connection = useSyncExternalStore(subscribe, readConnection, readConnection);
    useEffect(() => (store && taskId ? store.watch(taskId) : undefined), [store, taskId]);
    return useMemo(() => {
        if (!store)
            return own;
        const progress = entry?.progress ?? null;
        const stopped = connection.status === "error" ? connection.reason : null;
        return {
            progress,
            isComplete: progress !== null && TERMINAL.has(progress.state),
            error: entry?.error ?? stopped,
            status: connection.status,
            reason: connection.reason,
        };
    }, [store, own, entry, connection]);
}
