import { type GetToken, type StreamError, type TaskProgress } from "./client.js";
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
/**
 * Follow a task's progress; `getToken` may change identity between renders without
 * reopening the stream. The subscription is closed on unmount and when `taskId` changes
 * (so React 18 strict mode's mount–unmount–mount leaves exactly one open stream).
 */
export declare function useTaskProgress(taskId: string | null | undefined, getToken: GetToken, options?: UseTaskProgressOptions): TaskProgressState;
