/**
 * Fresh Vite apps that installed the packed tarball as the README says (React 18, React 19, no
 * React), built by tests/test_browser_dashboard.py into $APPS_DIR, run in Chromium against the
 * live service from another origin (http://localhost:<port>, allowed by CORS_ALLOWED_ORIGINS).
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";

import { test as base, expect, type Page } from "@playwright/test";

import { LiveService } from "../../test/live-service.js";

const APPS_DIR = process.env.APPS_DIR ?? "";
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

/** Serve $APPS_DIR/<app>/dist at /<app>/ on loopback. */
async function serveApps(): Promise<Server> {
  const server = createServer((req, res) => {
    const [, app, ...rest] = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname).split("/");
    const file = normalize(join(APPS_DIR, app ?? "", "dist", rest.join("/") || "index.html"));
    if (!file.startsWith(APPS_DIR) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

const test = base.extend<{ streams: string[] }, { live: LiveService; appOrigin: string }>({
  appOrigin: [
    async ({}, use) => {
      const server = await serveApps();
      await use(`http://localhost:${(server.address() as AddressInfo).port}`);
      server.close();
    },
    { scope: "worker" },
  ],
  live: [
    async ({ appOrigin }, use) => {
      process.env.CORS_ALLOWED_ORIGINS = appOrigin;
      const live = await LiveService.start();
      await use(live);
      await live.stop();
    },
    { scope: "worker", timeout: 180_000 },
  ],
  // Every stream request the page makes; and no uncaught error in the page.
  streams: async ({ page }, use) => {
    const streams: string[] = [];
    const errors: string[] = [];
    page.on("request", (r) => r.url().includes("/api/v1/sse/") && streams.push(r.url()));
    page.on("pageerror", (e) => errors.push(e.message));
    await use(streams);
    expect(errors).toEqual([]);
  },
});

/** Open an app with its parameters in the fragment (never sent to a server). */
async function open(page: Page, url: string, params: Record<string, string>): Promise<void> {
  await page.goto(`${url}#${new URLSearchParams(params)}`);
}

/** Create pending tasks (no job runs them) for a user, in one shell call; returns their ids. */
async function pendingTasks(live: LiveService, user: string, audioId: number, count: number): Promise<string[]> {
  const out = await live.shell(
    "from django.contrib.auth.models import User\n" +
      "from tasks_app.models import AudioFile, Task\n" +
      `u = User.objects.get(username="${user}"); a = AudioFile.objects.get(pk=${audioId})\n` +
      `print(",".join(Task.objects.create(owner=u, audio_file=a).id for _ in range(${count})))`,
  );
  return out.trim().split("\n").pop()!.split(",");
}

test("React 19, StrictMode: fifty bars over one stream, updated live, while other API calls answer", async ({ page, live, appOrigin, streams }) => {
  const { access } = await live.tokens("dave");
  const audio = await live.upload(access, "short");
  const ids = await pendingTasks(live, "dave", audio, 50);
  const reads: string[] = [];
  page.on("request", (r) => r.url().includes("/progress/") && reads.push(r.url()));
  await open(page, `${appOrigin}/react19/`, { api: live.baseUrl, token: access, tasks: ids.join(",") });
  await expect(page.locator("#react")).toHaveText(/^React 19\./);
  await expect(page.locator("#status")).toHaveText("live");
  await expect(page.locator("li[data-state=pending]")).toHaveCount(50);
  // The page's other API calls are not queued behind streams.
  await page.getByRole("button", { name: "Check the API" }).click();
  await expect(page.locator("#api")).toHaveText("API answered: 50 tasks");
  // Every bar follows its task live: cancel all fifty elsewhere.
  await Promise.all(ids.map((id) => live.api("POST", `/api/v1/tasks/${id}/cancel/`, access)));
  await expect(page.locator("li[data-state=cancelled][data-complete=true]")).toHaveCount(50);
  expect(streams).toEqual([`${live.baseUrl}/api/v1/sse/tasks/progress`]);
  expect(reads).toEqual([]); // the snapshot covered every bar
});

test("React 18, StrictMode: a real task's bar runs to 100 % over one stream", async ({ page, live, appOrigin, streams }) => {
  const { access } = await live.tokens("erin");
  const audio = await live.upload(access, "medium");
  const done = await live.createTask(access, await live.upload(access, "short"));
  await expect
    .poll(async () => ((await live.api("GET", `/api/v1/tasks/${done.id}/`, access)) as { state: string }).state, { timeout: 60_000 })
    .toBe("completed");
  const task = await live.createTask(access, audio);
  await open(page, `${appOrigin}/react18/`, { api: live.baseUrl, token: access, tasks: `${task.id},${done.id}` });
  await expect(page.locator("#react")).toHaveText("React 18.3.1");
  const bar = page.locator(`li[data-task-id="${task.id}"]`);
  await expect(bar).toHaveAttribute("data-state", "completed", { timeout: 60_000 });
  await expect(bar.locator("progress")).toHaveJSProperty("value", 100);
  // A task that had finished before the page opened is read once and shown too.
  await expect(page.locator(`li[data-task-id="${done.id}"]`)).toHaveAttribute("data-state", "completed");
  await expect(page.locator("#status")).toHaveText("live");
  expect(streams).toHaveLength(1);
});

test("without React: the package root follows a task; from an origin CORS refuses it says so", async ({ page, live, appOrigin, streams }) => {
  const { access } = await live.tokens("alice");
  const task = await live.createTask(access, await live.upload(access, "medium"));
  await open(page, `${appOrigin}/plain/`, { api: live.baseUrl, token: access, task: task.id });
  await expect(page.locator("#bar")).toHaveAttribute("data-state", "completed", { timeout: 60_000 });
  await expect(page.locator("#bar")).toHaveJSProperty("value", 100);
  await expect(page.locator("#status")).toHaveText("closed");
  expect(streams).toHaveLength(1);
  // The same app on an origin the service does not list.
  const refused = appOrigin.replace("localhost", "127.0.0.1");
  await open(page, `${refused}/plain/`, { api: live.baseUrl, token: access, task: task.id });
  await expect(page.locator("#status")).toHaveText(
    `error: The service at ${live.baseUrl} does not accept requests from ${refused}: add that origin to its CORS_ALLOWED_ORIGINS.`,
  );
});
