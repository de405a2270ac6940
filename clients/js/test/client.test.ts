/** subscribeToTask / subscribeToAllTasks / createTokenManager against a scripted SSE server. */
import { afterEach, describe, expect, it, vi } from "vitest";

import {
  createTokenManager,
  subscribeToAllTasks,
  subscribeToTask,
  type ConnectionStatus,
  type StreamError,
  type TaskProgress,
} from "../src/client.js";
import { FakeSseServer, fakeJwt, progress, waitFor } from "./fake-server.js";

const T = "task_abc";
const STREAM = `/api/v1/sse/tasks/${T}/progress`;

function recorder() {
  const seen = { progress: [] as TaskProgress[], complete: [] as TaskProgress[], errors: [] as StreamError[],
    statuses: [] as ConnectionStatus[], deleted: [] as string[] };
  return {
    seen,
    handlers: {
      onProgress: (p: TaskProgress) => seen.progress.push(p),
      onComplete: (p: TaskProgress) => seen.complete.push(p),
      onError: (e: StreamError) => seen.errors.push(e),
      onStatus: (s: ConnectionStatus) => seen.statuses.push(s),
      onDeleted: (id: string) => seen.deleted.push(id),
    },
  };
}

const fast = { retryDelayMs: { min: 1, max: 5 } };

afterEach(() => {
  vi.useRealTimers();
});

describe("subscribeToTask", () => {
  it("sends the token in the Authorization header, never in the URL", async () => {
    const server = new FakeSseServer();
    const token = fakeJwt(3600);
    const sub = subscribeToTask(T, { getToken: () => token, fetch: server.fetch, ...fast });
    const req = await server.request(0);
    expect(req.url).toBe(STREAM);
    expect(req.headers.authorization).toBe(`Bearer ${token}`);
    expect(req.headers["last-event-id"]).toBeUndefined();
    sub.close();
  });

  it("resumes with the last event id after the connection drops", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const first = (await server.request(0)).open();
    first.send("progress", progress(T, 10), `task-${T}:4`);
    first.send("progress", progress(T, 20), `task-${T}:5`);
    await waitFor(() => seen.progress.length === 2, "two progress events");
    first.fail();
    const second = await server.request(1);
    expect(second.headers["last-event-id"]).toBe(`task-${T}:5`);
    expect(seen.statuses).toContain("reconnecting");
    second.open().send("progress", progress(T, 30), `task-${T}:6`);
    await waitFor(() => seen.progress.length === 3, "the replayed event");
    expect(sub.lastEventId).toBe(`task-${T}:6`);
    expect(seen.progress.map((p) => p.progress)).toEqual([10, 20, 30]);
    sub.close();
  });

  it("on resume, replayed events older than the snapshot do not move the state backwards", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const at = (seconds: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();
    const event = (value: number, seconds: number) => ({ ...progress(T, value), updated_at: at(seconds) });
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const first = (await server.request(0)).open();
    first.send("progress", event(10, 1), `task-${T}:2`);
    await waitFor(() => seen.progress.length === 1, "the first event");
    first.fail();
    const second = (await server.request(1)).open();
    second.send("progress", event(50, 5)); // the snapshot: current state, no id
    second.send("progress", event(20, 2), `task-${T}:3`); // missed events, older than it
    second.send("progress", event(50, 5), `task-${T}:4`);
    second.send("progress", event(60, 6), `task-${T}:5`); // live again
    await waitFor(() => sub.lastEventId === `task-${T}:5`, "the live event");
    expect(seen.progress.map((p) => p.progress)).toEqual([10, 50, 50, 60]);
    sub.close();
  });

  it("also resumes after the server ends the response without complete", async () => {
    const server = new FakeSseServer();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...fast });
    const first = (await server.request(0)).open();
    first.send("progress", progress(T, 10), `task-${T}:2`);
    first.end();
    expect((await server.request(1)).headers["last-event-id"]).toBe(`task-${T}:2`);
    sub.close();
  });

  it("stops on complete: reports it and never reconnects", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const stream = (await server.request(0)).open();
    stream.send("progress", progress(T, 100, "completed"), `task-${T}:8`);
    stream.send("complete", progress(T, 100, "completed"), `task-${T}:9`);
    await waitFor(() => seen.statuses.includes("closed"), "the subscription to close");
    expect(seen.complete).toHaveLength(1);
    expect(seen.complete[0].state).toBe("completed");
    expect(seen.errors).toEqual([]);
    await expect(server.request(1, 100)).rejects.toThrow(/never came/);
  });

  it("stops on 204: reads the final state from the polling endpoint once, no more streams", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    subscribeToTask(T, {
      getToken: () => fakeJwt(3600), fetch: server.fetch, lastEventId: `task-${T}:9`, ...handlers, ...fast,
    });
    const req = await server.request(0);
    expect(req.headers["last-event-id"]).toBe(`task-${T}:9`);
    req.respond(204);
    const poll = await server.request(1);
    expect(poll.url).toBe(`/api/v1/tasks/${T}/progress/`);
    poll.respond(200, progress(T, 100, "completed"));
    await waitFor(() => seen.statuses.includes("closed"), "the subscription to close");
    expect(seen.complete.map((p) => p.state)).toEqual(["completed"]);
    await expect(server.request(2, 100)).rejects.toThrow(/never came/);
  });

  it("stops on a final error event `deleted` and reports it", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const stream = (await server.request(0)).open();
    stream.send("progress", progress(T, 40), `task-${T}:3`);
    stream.send("error", { code: "deleted", message: "The task was deleted." }, `task-${T}:4`);
    await waitFor(() => seen.errors.length === 1, "the error");
    expect(seen.errors[0].code).toBe("deleted");
    expect(seen.statuses.at(-1)).toBe("error");
    await expect(server.request(1, 100)).rejects.toThrow(/never came/);
  });

  it("on `unauthenticated` gets a fresh token and resumes from the last event id", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const getToken = vi.fn(({ forceRefresh }: { forceRefresh: boolean }) => fakeJwt(3600, forceRefresh ? "new" : "old"));
    subscribeToTask(T, { getToken, fetch: server.fetch, ...handlers, ...fast });
    const first = await server.request(0);
    const stream = first.open();
    stream.send("progress", progress(T, 40), `task-${T}:3`);
    stream.send("error", { code: "unauthenticated", message: "Token expired." });
    const second = await server.request(1);
    expect(getToken).toHaveBeenLastCalledWith({ forceRefresh: true });
    expect(second.headers.authorization).not.toBe(first.headers.authorization);
    expect(second.headers["last-event-id"]).toBe(`task-${T}:3`);
    expect(seen.errors).toEqual([]);
    second.open().send("complete", progress(T, 100, "completed"), `task-${T}:7`);
    await waitFor(() => seen.complete.length === 1, "complete after the refresh");
  });

  it("answers a 401 with one refresh; a second 401 is final", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const getToken = vi.fn((_: { forceRefresh: boolean }) => fakeJwt(3600));
    subscribeToTask(T, { getToken, fetch: server.fetch, ...handlers, ...fast });
    (await server.request(0)).respond(401, { error: { code: "token_not_valid", message: "expired" } });
    (await server.request(1)).respond(401, { error: { code: "token_not_valid", message: "expired" } });
    await waitFor(() => seen.errors.length === 1, "the final error");
    expect(getToken.mock.calls.map((c) => c[0])).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(seen.errors[0]).toMatchObject({ code: "unauthenticated", status: 401 });
  });

  it("stops on 404 (unknown or deleted task)", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    (await server.request(0)).respond(404, { error: { code: "not_found", message: "Task not found." } });
    await waitFor(() => seen.errors.length === 1, "the error");
    expect(seen.errors[0]).toMatchObject({ code: "not_found", status: 404 });
  });

  it("reconnects with a fresh token before the current one expires", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const server = new FakeSseServer();
    const stale = fakeJwt(90, "expiring");
    const getToken = vi.fn(({ forceRefresh }: { forceRefresh: boolean }) =>
      forceRefresh ? fakeJwt(3600, "fresh") : stale);
    const sub = subscribeToTask(T, {
      getToken, fetch: server.fetch, refreshMarginSeconds: 30, heartbeatTimeoutMs: 600_000, ...fast,
    });
    await vi.advanceTimersByTimeAsync(0);
    const first = server.requests[0];
    first.open().send("progress", progress(T, 5), `task-${T}:2`);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(server.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(first.signal?.aborted).toBe(true);
    expect(server.requests).toHaveLength(2);
    expect(getToken).toHaveBeenLastCalledWith({ forceRefresh: true });
    expect(server.requests[1].headers["last-event-id"]).toBe(`task-${T}:2`);
    sub.close();
  });

  it("before expiry, takes the app's already refreshed token without forcing another refresh", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const server = new FakeSseServer();
    let current = fakeJwt(90, "first", 3600);
    const getToken = vi.fn((_: { forceRefresh: boolean }) => current);
    const sub = subscribeToTask(T, {
      getToken, fetch: server.fetch, refreshMarginSeconds: 30, heartbeatTimeoutMs: 600_000, ...fast,
    });
    await vi.advanceTimersByTimeAsync(0);
    server.requests[0].open();
    current = fakeJwt(3600, "refreshed-by-the-app");
    await vi.advanceTimersByTimeAsync(61_000);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1].headers.authorization).toBe(`Bearer ${current}`);
    expect(getToken.mock.calls.map((c) => c[0].forceRefresh)).toEqual([false, false]);
    sub.close();
  });

  it("reconnects when a connection goes silent past the heartbeat timeout", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const server = new FakeSseServer();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, heartbeatTimeoutMs: 45_000, ...fast });
    await vi.advanceTimersByTimeAsync(0);
    const first = server.requests[0];
    const stream = first.open();
    stream.send("progress", progress(T, 5), `task-${T}:2`);
    for (let i = 0; i < 4; i += 1) {
      await vi.advanceTimersByTimeAsync(15_000);
      stream.comment("keep-alive"); // keep-alives keep it open
    }
    expect(server.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(46_000); // then silence
    expect(first.signal?.aborted).toBe(true);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1].headers["last-event-id"]).toBe(`task-${T}:2`);
    sub.close();
  });

  it("close() aborts the request and silences every callback", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const req = await server.request(0);
    req.open();
    sub.close();
    expect(req.signal?.aborted).toBe(true);
    expect(seen.statuses.at(-1)).toBe("closed");
    await expect(server.request(1, 100)).rejects.toThrow(/never came/);
    expect(seen.errors).toEqual([]);
  });
});

describe("connection status and reasons", () => {
  /** The statuses and reasons a subscription reported, as `status` or `status:code`. */
  function statusLog() {
    const log: string[] = [];
    const reasons: StreamError[] = [];
    const onStatus = (status: ConnectionStatus, reason: StreamError | null): void => {
      log.push(reason ? `${status}:${reason.code}` : status);
      if (reason) reasons.push(reason);
    };
    return { log, reasons, onStatus };
  }

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("is connecting until the first chunk arrives, then live", async () => {
    const server = new FakeSseServer();
    const { log, onStatus } = statusLog();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, onStatus, ...fast });
    const stream = (await server.request(0)).open();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(log).toEqual(["connecting"]);
    stream.send("progress", progress(T, 1), `task-${T}:1`);
    await waitFor(() => log.includes("live"), "live");
    expect(log).toEqual(["connecting", "live"]);
    sub.close();
    expect(log.at(-1)).toBe("closed");
  });

  it("429: says so and waits Retry-After before the next try", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const server = new FakeSseServer();
    const { log, reasons, onStatus } = statusLog();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, onStatus, ...fast });
    await vi.advanceTimersByTimeAsync(0);
    server.requests[0].respond(429, { error: { code: "too_many_streams", message: "Too many open streams." } }, { "Retry-After": "7" });
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(["connecting", "reconnecting:too_many_streams"]);
    expect(reasons[0]).toMatchObject({ status: 429, retryAfterMs: 7000, message: "Too many open streams. Trying again in 7 s." });
    await vi.advanceTimersByTimeAsync(6_900);
    expect(server.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(server.requests).toHaveLength(2);
    sub.close();
  });

  it("404 and a refused token end in `error` with a sentence, not endless retries", async () => {
    const server = new FakeSseServer();
    const notFound = statusLog();
    subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, onStatus: notFound.onStatus, ...fast });
    (await server.request(0)).respond(404, { error: { code: "not_found", message: "Task task_abc not found." } });
    await waitFor(() => notFound.log.at(-1) === "error:not_found", "error:not_found");
    expect(notFound.reasons.at(-1)?.message).toBe("Task task_abc not found.");

    const refused = statusLog();
    subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, onStatus: refused.onStatus, ...fast });
    const simplejwt = { error: { code: "token_not_valid", message: "Given token not valid for any token type" } };
    (await server.request(1)).respond(401, simplejwt);
    (await server.request(2)).respond(401, simplejwt);
    await waitFor(() => refused.log.at(-1) === "error:unauthenticated", "error:unauthenticated");
    expect(refused.reasons.at(-1)?.message).toMatch(/refused the access token .*sign in again/);
    await expect(server.request(3, 100)).rejects.toThrow(/never came/);
  });

  it("server gone: a broken live stream is `connection_lost`, then `unreachable` while nothing answers", async () => {
    const server = new FakeSseServer();
    const { log, reasons, onStatus } = statusLog();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, baseUrl: "http://api.test", onStatus, ...fast });
    const stream = (await server.request(0)).open();
    stream.send("progress", progress(T, 5), `task-${T}:1`);
    await waitFor(() => log.includes("live"), "live");
    stream.fail();
    (await server.request(1)).refuse();
    await waitFor(() => log.includes("reconnecting:unreachable"), "unreachable");
    expect(log).toEqual(["connecting", "live", "reconnecting:connection_lost", "reconnecting:unreachable"]);
    expect(reasons.at(-1)?.message).toBe("The service at http://api.test cannot be reached (it is down, or the network is).");
    const back = (await server.request(2)).open();
    back.send("progress", progress(T, 9), `task-${T}:2`);
    await waitFor(() => log.at(-1) === "live", "live again");
    sub.close();
  });

  it("from another origin: a server that answers but not to this origin is `cors_refused`, and final", async () => {
    vi.stubGlobal("location", new URL("http://app.test/page"));
    const server = new FakeSseServer();
    const { log, reasons, onStatus } = statusLog();
    const errors: StreamError[] = [];
    subscribeToTask(T, {
      getToken: () => fakeJwt(3600), fetch: server.fetch, baseUrl: "http://api.test", onStatus, onError: (e) => errors.push(e), ...fast,
    });
    (await server.request(0)).refuse();
    const probe = await server.request(1);
    expect(probe.mode).toBe("no-cors");
    expect(probe.url).toBe(`http://api.test${STREAM}`);
    expect(probe.headers.authorization).toBeUndefined();
    probe.respond(401);
    await waitFor(() => errors.length === 1, "the final error");
    expect(log).toEqual(["connecting", "error:cors_refused"]);
    expect(reasons[0].message).toBe(
      "The service at http://api.test does not accept requests from http://app.test: add that origin to its CORS_ALLOWED_ORIGINS.",
    );
    await expect(server.request(2, 100)).rejects.toThrow(/never came/);
  });

  it("from another origin: when the probe gets no answer either, the server is `unreachable` and retried", async () => {
    vi.stubGlobal("location", new URL("http://app.test/page"));
    const server = new FakeSseServer();
    const { log, onStatus } = statusLog();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, baseUrl: "http://api.test", onStatus, ...fast });
    (await server.request(0)).refuse();
    (await server.request(1)).refuse();
    await waitFor(() => log.includes("reconnecting:unreachable"), "unreachable");
    expect((await server.request(2)).mode).toBeUndefined(); // the next real try
    sub.close();
  });

  it("notices a dead connection 20 s after the last byte by default (keep-alives come every 15 s)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const server = new FakeSseServer();
    const { log, onStatus } = statusLog();
    const sub = subscribeToTask(T, { getToken: () => fakeJwt(3600), fetch: server.fetch, onStatus, ...fast });
    await vi.advanceTimersByTimeAsync(0);
    const stream = server.requests[0].open();
    stream.comment("keep-alive");
    await vi.advanceTimersByTimeAsync(15_000);
    stream.comment("keep-alive");
    await vi.advanceTimersByTimeAsync(19_900);
    expect(log).toEqual(["connecting", "live"]);
    await vi.advanceTimersByTimeAsync(200);
    expect(log.at(-1)).toBe("reconnecting:silent");
    expect(server.requests[0].signal?.aborted).toBe(true);
    sub.close();
  });
});

describe("subscribeToAllTasks", () => {
  it("keeps going after complete, reports deleted tasks, ends only on close()", async () => {
    const server = new FakeSseServer();
    const { seen, handlers } = recorder();
    const sub = subscribeToAllTasks({ getToken: () => fakeJwt(3600), fetch: server.fetch, ...handlers, ...fast });
    const req = await server.request(0);
    expect(req.url).toBe("/api/v1/sse/tasks/progress");
    const stream = req.open();
    stream.send("progress", progress("task_a", 50), "user-1:10");
    stream.send("complete", progress("task_a", 100, "completed"), "user-1:11");
    stream.send("deleted", { task_id: "task_b" }, "user-1:12");
    stream.send("progress", progress("task_c", 1), "user-1:13");
    await waitFor(() => seen.progress.length === 2, "the event after complete");
    expect(seen.complete.map((p) => p.task_id)).toEqual(["task_a"]);
    expect(seen.deleted).toEqual(["task_b"]);
    expect(sub.lastEventId).toBe("user-1:13");
    expect(seen.statuses).not.toContain("closed");
    sub.close();
  });

  it("ends on `unauthenticated` only to reconnect with a new token", async () => {
    const server = new FakeSseServer();
    const getToken = vi.fn(({ forceRefresh }: { forceRefresh: boolean }) => fakeJwt(3600, String(forceRefresh)));
    const sub = subscribeToAllTasks({ getToken, fetch: server.fetch, ...fast });
    const stream = (await server.request(0)).open();
    stream.send("progress", progress("task_a", 50), "user-1:10");
    stream.send("error", { code: "unauthenticated", message: "User deactivated." });
    const next = await server.request(1);
    expect(next.headers["last-event-id"]).toBe("user-1:10");
    expect(getToken).toHaveBeenLastCalledWith({ forceRefresh: true });
    sub.close();
  });
});

describe("createTokenManager", () => {
  it("keepFresh() refreshes the access token a margin before it expires, again and again", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    let refreshes = 0;
    const manager = createTokenManager({
      access: fakeJwt(300), refresh: "r", marginSeconds: 60,
      fetch: (async () => {
        refreshes += 1;
        return new Response(JSON.stringify({ access: fakeJwt(300, `n${refreshes}`) }), { status: 200 });
      }) as unknown as typeof fetch,
    });
    const stop = manager.keepFresh();
    await vi.advanceTimersByTimeAsync(239_000);
    expect(refreshes).toBe(0);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(refreshes).toBe(1);
    await vi.advanceTimersByTimeAsync(240_000);
    expect(refreshes).toBe(2);
    stop();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(refreshes).toBe(2);
    expect(await manager.access()).toContain(".");
  });

  it("refreshes once for concurrent callers when the access token is about to expire", async () => {
    const calls: string[] = [];
    const fresh = fakeJwt(3600, "fresh");
    const manager = createTokenManager({
      access: fakeJwt(10, "old", 3600), refresh: "r1", marginSeconds: 60,
      fetch: (async (url: string, init: RequestInit) => {
        calls.push(`${url} ${init.body}`);
        return new Response(JSON.stringify({ access: fresh, refresh: "r2" }), { status: 200 });
      }) as typeof fetch,
    });
    const [a, b] = await Promise.all([manager.access(), manager.getToken({ forceRefresh: false })]);
    expect(a).toBe(fresh);
    expect(b).toBe(fresh);
    expect(calls).toEqual(['/api/v1/auth/token/refresh/ {"refresh":"r1"}']);
    expect(await manager.access()).toBe(fresh);
    expect(calls).toHaveLength(1);
  });

  it("refreshes tokens that live shorter than the margin halfway through, not continuously", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    let refreshes = 0;
    const manager = createTokenManager({
      access: fakeJwt(60), refresh: "r", marginSeconds: 60,
      fetch: (async () => {
        refreshes += 1;
        return new Response(JSON.stringify({ access: fakeJwt(60, `n${refreshes}`) }), { status: 200 });
      }) as unknown as typeof fetch,
    });
    const stop = manager.keepFresh();
    await vi.advanceTimersByTimeAsync(29_000);
    expect(refreshes).toBe(0);
    await vi.advanceTimersByTimeAsync(90_000); // 119 s: due at about 30, 60, 90 s
    expect(refreshes).toBeGreaterThanOrEqual(3);
    expect(refreshes).toBeLessThanOrEqual(4);
    stop();
  });

  it("fails with TokenRefreshError when the refresh token is refused", async () => {
    const manager = createTokenManager({
      access: fakeJwt(3600), refresh: "bad",
      fetch: (async () => new Response("{}", { status: 401 })) as unknown as typeof fetch,
    });
    await expect(manager.getToken({ forceRefresh: true })).rejects.toMatchObject({ name: "TokenRefreshError", status: 401 });
  });
});
