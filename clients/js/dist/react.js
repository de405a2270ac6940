/** React binding: `useTaskProgress(taskId, getToken)` follows one task's stream. */
import { useEffect, useRef, useState } from "react";
import { subscribeToTask } from "./client.js";
const INITIAL = { progress: null, isComplete: false, error: null };
/**
 * Follow a task's progress; `getToken` may change identity between renders without
 * reopening the stream. The subscription is closed on unmount and when `taskId` changes
 * (so React 18 strict mode's mount–unmount–mount leaves exactly one open stream).
 */
export function useTaskProgress(taskId, getToken, options = {}) {
    const [state, setState] = useState(INITIAL);
    const tokenRef = useRef(getToken);
    tokenRef.current = getToken;
    const { baseUrl, fetch } = options;
    useEffect(() => {
        setState(INITIAL);
        if (!taskId)
            return undefined;
        const subscription = subscribeToTask(taskId, {
            getToken: (opts) => tokenRef.current(opts),
            baseUrl,
            fetch,
            onProgress: (progress) => setState((s) => ({ ...s, progress })),
            onComplete: (progress) => setState({ progress, isComplete: true, error: null }),
            onError: (error) => setState((s) => ({ ...s, error })),
        });
        return () => subscription.close();
    }, [taskId, baseUrl, fetch]);
    return state;
}
