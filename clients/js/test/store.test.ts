/** createTaskStore: many tasks over one all-tasks stream; unknown tasks read once; deletions. */
import { describe, expect, it } from "vitest";

import { createTaskStore } from "../src/store.js";
import { FakeSseServer, fakeJwt, progress, waitFor } from "./fake-server.js";

const fast = { retryDelayMs: { min: 1, max: 5 } };

describe("createTaskStore", () => {
  it("follows many tasks over one stream; a watched task the snapshot lacks is read once", async () => {
    const server = new FakeSseServer();
    const store = createTaskStore({ getToken: () => fakeJwt(3600), fetch: server.fetch, ...fast });
    let changes = 0;
    store.subscribe(() => void (changes += 1));
    const stopWatching = ["task_a", "task_b", "task_done"].map((id) => store.watch(id));
    expect(server.requests).toHaveLength(0); // nothing before connect()
    store.connect();
    const req = await server.request(0);
    expect(req.url).toBe("/api/v1/sse/tasks/progress");
    const stream = req.open();
    // The snapshot (unfinished tasks), in one chunk as the server sends it.
    stream.send("progress", progress("task_a", 10));
    await waitFor(() => store.connection().status === "live", "live");
    // task_b and task_done were not in it: each is read once, not task_a.
    const reads = [await server.request(1), await server.request(2)];
    expect(reads.map((r) => r.url).sort()).toEqual(["/api/v1/tasks/task_b/progress/", "/api/v1/tasks/task_done/progress/"]);
    reads.find((r) => r.url.includes("task_b"))!.respond(404, { error: { code: "not_found", message: "x" } });
    reads.find((r) => r.url.includes("task_done"))!.respond(200, progress("task_done", 100, "completed"));
    await waitFor(() => store.get("task_done")?.progress?.state === "completed", "task_done read");
    expect(store.get("task_b")?.error?.code).toBe("not_found");
    stream.send("progress", progress("task_a", 55), "user-1:4");
    await waitFor(() => store.get("task_a")?.progress?.progress === 55, "live update");
    const before = store.tasks();
    expect(store.tasks()).toBe(before); // the same Map until something changes
    stream.send("deleted", { task_id: "task_a" }, "user-1:5");
    await waitFor(() => store.get("task_a")?.error?.code === "deleted", "deleted");
    expect(store.tasks()).not.toBe(before);
    expect([...store.tasks().keys()]).toEqual(["task_done"]);
    expect(changes).toBeGreaterThan(3);
    await expect(server.request(3, 100)).rejects.toThrow(/never came/);
    stopWatching.forEach((stop) => stop());
    store.close();
    expect(req.signal?.aborted).toBe(true);
    expect(store.connection().status).toBe("closed");
  });
});
