// @vitest-environment jsdom
/** useTaskProgress: state shape, stop on complete/204, errors, strict-mode and unmount cleanup. */
import { act, cleanup, render, renderHook } from "@testing-library/react";
import { StrictMode, createElement, type ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import { TaskProgressProvider, useConnectionStatus, useTaskProgress, useTasksProgress } from "../src/react.js";
import { FakeSseServer, fakeJwt, progress, waitFor } from "./fake-server.js";

const T = "task_hook";
const getToken = (): string => fakeJwt(3600);

afterEach(() => cleanup());

/** Streams the test server still serves (requests the hook has not aborted). */
const openStreams = (server: FakeSseServer): number =>
  server.requests.filter((r) => r.url.includes("/sse/") && !r.signal?.aborted).length;

describe("useTaskProgress", () => {
  it("starts empty, follows progress, then reports complete", async () => {
    const server = new FakeSseServer();
    const { result } = renderHook(() => useTaskProgress(T, getToken, { fetch: server.fetch }));
    expect(result.current).toEqual({ progress: null, isComplete: false, error: null, status: "connecting", reason: null });
    const stream = (await server.request(0)).open();
    await act(async () => stream.send("progress", progress(T, 42), `task-${T}:3`));
    await waitFor(() => result.current.progress?.progress === 42, "progress 42");
    expect(result.current.isComplete).toBe(false);
    expect(result.current.status).toBe("live");
    await act(async () => stream.send("complete", progress(T, 100, "completed"), `task-${T}:9`));
    await waitFor(() => result.current.isComplete, "isComplete");
    expect(result.current.progress?.state).toBe("completed");
    expect(openStreams(server)).toBe(0);
  });

  it("treats 204 on resume as complete", async () => {
    const server = new FakeSseServer();
    const { result } = renderHook(() => useTaskProgress(T, getToken, { fetch: server.fetch }));
    const stream = (await server.request(0)).open();
    await act(async () => stream.send("progress", progress(T, 99), `task-${T}:9`));
    await waitFor(() => result.current.progress?.progress === 99, "progress 99");
    await act(async () => stream.fail());
    const resume = await server.request(1);
    expect(resume.headers["last-event-id"]).toBe(`task-${T}:9`);
    await act(async () => resume.respond(204));
    await act(async () => (await server.request(2)).respond(200, progress(T, 100, "completed")));
    await waitFor(() => result.current.isComplete, "isComplete after 204");
    expect(result.current.progress?.progress).toBe(100);
  });

  it("exposes a final error event (deleted)", async () => {
    const server = new FakeSseServer();
    const { result } = renderHook(() => useTaskProgress(T, getToken, { fetch: server.fetch }));
    const stream = (await server.request(0)).open();
    await act(async () => stream.send("error", { code: "deleted", message: "gone" }, `task-${T}:5`));
    await waitFor(() => result.current.error, "the error");
    expect(result.current.error?.code).toBe("deleted");
    expect(result.current.isComplete).toBe(false);
    await waitFor(() => result.current.status === "error", "status error");
    expect(result.current.reason).toMatchObject({ code: "deleted", message: "gone" });
  });

  it("keeps exactly one stream open under StrictMode and closes it on unmount", async () => {
    const server = new FakeSseServer();
    let subscriptions = 0;
    const token = (): string => {
      subscriptions += 1;
      return fakeJwt(3600);
    };
    function Probe(): ReactNode {
      const { progress: p } = useTaskProgress(T, token, { fetch: server.fetch });
      return createElement("span", null, p ? String(p.progress) : "none");
    }
    const view = render(createElement(StrictMode, null, createElement(Probe)));
    const live = await server.request(0);
    // Strict mode subscribed, cleaned up and subscribed again: the first subscription was
    // closed before it sent its request, so the server sees one.
    expect(subscriptions).toBe(2);
    await expect(server.request(1, 100)).rejects.toThrow(/never came/);
    expect(openStreams(server)).toBe(1);
    const stream = live.open();
    await act(async () => stream.send("progress", progress(T, 7), `task-${T}:2`));
    await waitFor(() => view.container.textContent === "7", "rendered progress");
    view.unmount();
    expect(live.signal?.aborted).toBe(true);
    expect(openStreams(server)).toBe(0);
  });

  it("a new getToken identity on each render does not reopen the stream; a new taskId does", async () => {
    const server = new FakeSseServer();
    const { rerender } = renderHook(({ id }) => useTaskProgress(id, () => fakeJwt(3600), { fetch: server.fetch }),
      { initialProps: { id: "task_one" } });
    await server.request(0);
    rerender({ id: "task_one" });
    rerender({ id: "task_one" });
    expect(server.requests).toHaveLength(1);
    rerender({ id: "task_two" });
    const second = await server.request(1);
    expect(second.url).toContain("task_two");
    expect(server.requests[0].signal?.aborted).toBe(true);
    expect(openStreams(server)).toBe(1);
  });
});

describe("TaskProgressProvider", () => {
  const ids = Array.from({ length: 50 }, (_, i) => `task_${i}`);

  function Bar({ id }: { id: string }): ReactNode {
    const { progress: p, status } = useTaskProgress(id);
    return createElement("li", { "data-id": id, "data-status": status }, p ? String(p.progress) : "-");
  }

  function Badge(): ReactNode {
    const { status, reason } = useConnectionStatus();
    return createElement("p", { id: "badge" }, reason ? `${status}: ${reason.message}` : status);
  }

  function Count(): ReactNode {
    return createElement("p", { id: "count" }, String(useTasksProgress().tasks.size));
  }

  it("fifty bars under StrictMode share one stream and update live", async () => {
    const server = new FakeSseServer();
    const view = render(
      createElement(StrictMode, null,
        createElement(TaskProgressProvider, { getToken, fetch: server.fetch },
          createElement(Badge), createElement(Count), createElement("ul", null, ids.map((id) => createElement(Bar, { id, key: id }))))),
    );
    const req = await server.request(0);
    expect(req.url).toBe("/api/v1/sse/tasks/progress");
    const stream = req.open();
    // One chunk: the snapshot of all fifty.
    await act(async () => stream.sendAll(ids.map((id) => ["progress", progress(id, 1)])));
    await waitFor(() => view.container.querySelector("#badge")?.textContent === "live", "live");
    expect(view.container.querySelector("#count")?.textContent).toBe("50");
    await act(async () => stream.send("progress", progress("task_17", 64), "user-1:9"));
    await waitFor(() => view.container.querySelector('[data-id="task_17"]')?.textContent === "64", "bar 17 at 64");
    expect(view.container.querySelector('[data-id="task_3"]')?.textContent).toBe("1");
    // Exactly one request in all: one stream, and no reads (the snapshot covered every bar).
    await expect(server.request(1, 100)).rejects.toThrow(/never came/);
    await act(async () => stream.fail());
    await waitFor(() => view.container.querySelector("#badge")?.textContent?.startsWith("reconnecting: The connection"), "reconnecting");
    view.unmount();
    expect(openStreams(server)).toBe(0);
  });

  it("useTaskProgress(id) without getToken needs the provider", () => {
    expect(() => renderHook(() => useTaskProgress(T))).toThrow(/TaskProgressProvider/);
  });
});
