/** The README's `event-source-polyfill` snippet in Chromium, against a compressed, coalesced stream. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { expect, test } from "./fixtures.js";

const polyfill = readFileSync(createRequire(import.meta.url).resolve("event-source-polyfill"), "utf8");

test("the README's event-source-polyfill snippet follows a gzip-compressed stream to complete", async ({ page, live }) => {
  const { access } = await live.tokens("alice");
  const task = await live.createTask(access, await live.upload(access, "long"));
  // A page of the API's own origin holding the polyfill, as an app bundling it would be.
  await page.route(`${live.baseUrl}/polyfill-demo`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><script>${polyfill}</script>` }),
  );
  const encodings: Array<string | undefined> = [];
  page.on("response", (response) => {
    if (response.url().includes("/sse/")) encodings.push(response.headers()["content-encoding"]);
  });
  await page.goto(`${live.baseUrl}/polyfill-demo`);
  const seen = await page.evaluate(
    ({ taskId, accessToken }) =>
      new Promise<Array<{ state: string; progress: number }>>((resolve) => {
        const seen: Array<{ state: string; progress: number }> = [];
        const render = (data: { state: string; progress: number }) => seen.push(data);
        const { EventSourcePolyfill } = window as unknown as {
          EventSourcePolyfill: new (url: string, init: object) => EventSource;
        };
        // The README's snippet, unchanged but for `resolve`.
        const es = new EventSourcePolyfill(`/api/v1/sse/tasks/${taskId}/progress`, {
          headers: { Authorization: `Bearer ${accessToken}` },
          heartbeatTimeout: 45000, // the server sends a keep-alive every 15 s
        });
        es.addEventListener("progress", (e) => render(JSON.parse((e as MessageEvent).data)));
        es.addEventListener("complete", (e) => { render(JSON.parse((e as MessageEvent).data)); es.close(); resolve(seen); });
      }),
    { taskId: task.id, accessToken: access },
  );
  expect(encodings[0]).toBe("gzip");
  expect(seen.length).toBeGreaterThan(1); // the snapshot, then the task's own events
  expect(seen.at(-1)).toMatchObject({ state: "completed", progress: 100 });
  const values = seen.map((data) => data.progress);
  expect(values).toEqual([...values].sort((a, b) => a - b));
});
