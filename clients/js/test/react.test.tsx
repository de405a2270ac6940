// @vitest-environment jsdom
/** useTaskProgress: state shape, stop on complete/204, errors, strict-mode and unmount cleanup. */
import { act, cleanup, render, renderHook } from "@testing-library/react";
import { StrictMode, createElement, type ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import { useTaskProgress } from "../src/react.js";
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
    expect(result.current).toEqual({ progress: null, isComplete: false, error: null });
    const stream = (await server.request(0)).open();
    await act(async () => stream.send("progress", progress(T, 42), `task-${T}:3`));
    await waitFor(() => result.current.progress?.progress === 42, "progress 42");
    expect(result.current.isComplete).toBe(false);
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
