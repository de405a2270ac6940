/** React binding: `useTaskProgress(taskId, getToken)` follows one task's stream. */
import { useEffect, useRef, useState } from "react";

import { subscribeToTask, type GetToken, type StreamError, type TaskProgress } from "./client.js";

/** What {@link useTaskProgress} returns. */
export interface TaskProgressState {
  /** The newest TaskProgress, or null before the first event. */
  progress: TaskProgress | null;
  /** True once the task ended (`complete` received, or `204` on resume); check `progress.state`. */
  isComplete: boolean;
  /** Why the stream stopped early (`deleted`, `not_found`, `unauthenticated`, …), else null. */
  error: StreamError | null;
}

/** Options of {@link useTaskProgress}. */
export interface UseTaskProgressOptions {
  baseUrl?: string;
  fetch?: typeof fetch;
}

const INITIAL: TaskProgressState = { progress: null, isComplete: false, error: null };

/**
 * Follow a task's progress; `getToken` may change identity between renders without
 * reopening the stream. The subscription is closed on unmount and when `taskId` changes
 * (so React 18 strict mode's mount–unmount–mount leaves exactly one open stream).
 */
export function useTaskProgress(
  taskId: string | null | undefined,
  getToken: GetToken,
  options: UseTaskProgressOptions = {},
): TaskProgressState {
  const [state, setState] = useState<TaskProgressState>(INITIAL);
  const tokenRef = useRef(getToken);
  tokenRef.current = getToken;
  const { baseUrl, fetch } = options;

  useEffect(() => {
    setState(INITIAL);
    if (!taskId) return undefined;
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
