/** The dashboard in Chromium against the real service: sign in, upload, run, cancel, restart, scale. */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

import { expect, row, test } from "./fixtures.js";

test("sign in, upload with the picker, start a task, watch it reach 100 % and draw the waveform", async ({ page, live, signIn }) => {
  await signIn("alice");
  await page.locator("#file-input").setInputFiles(live.audio.short);
  await expect(page.locator("#upload-percent")).toHaveText("Uploaded");
  await expect(page.locator("#upload-progress")).toHaveJSProperty("value", 100);
  await expect(page.locator("#audio-select")).toContainText("short.wav");
  await page.getByLabel("Kind").selectOption("analyze");
  await page.getByRole("button", { name: "Start task" }).click();
  const task = page.locator("li.task").first();
  await expect(task).toHaveAttribute("data-state", "completed");
  await expect(task.locator("progress")).toHaveJSProperty("value", 100);
  await expect(task.locator(".percent")).toHaveText("100 %");
  await expect(task.locator("canvas.waveform")).toHaveAttribute("data-drawn", "true");
  // The canvas really has ink on it.
  const inked = await task.locator("canvas.waveform").evaluate((canvas: HTMLCanvasElement) => {
    const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
    let count = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) count += 1;
    return count;
  });
  expect(inked).toBeGreaterThan(1000);
  await expect(task.locator('[data-figure="integrated_lufs"]')).toHaveText(/^-\d+\.\d LUFS$/);
  await expect(task.locator('[data-figure="true_peak_dbtp"]')).toHaveText(/dBTP$/);
});

test("drag and drop uploads, and a normalize task offers its output for download", async ({ page, live, signIn }) => {
  await signIn("bob");
  const bytes = readFileSync(live.audio.short).toString("base64");
  const transfer = await page.evaluateHandle(([b64, name]) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], name, { type: "audio/wav" }));
    return dt;
  }, [bytes, "dropped.wav"] as const);
  await page.locator("#drop-zone").dispatchEvent("dragover", { dataTransfer: transfer });
  await page.locator("#drop-zone").dispatchEvent("drop", { dataTransfer: transfer });
  await expect(page.locator("#upload-percent")).toHaveText("Uploaded");
  await expect(page.locator("#audio-select")).toContainText("dropped.wav");
  // The header shows the storage the upload takes against the quota (STORAGE_QUOTA_MB, 5120 MiB).
  await expect(page.locator("#storage")).toHaveText(/^\d+(\.\d)? (KB|MB) of 5\.4 GB stored$/);
  await page.getByLabel("Kind").selectOption("normalize");
  await page.getByText("Options", { exact: true }).click();
  await page.locator('#options [name="target_lufs"]').fill("-20");
  await page.locator('#options [name="output_format"]').selectOption("flac");
  await page.getByRole("button", { name: "Start task" }).click();
  const task = page.locator("li.task").first();
  await expect(task).toHaveAttribute("data-state", "completed");
  await expect(task.locator('[data-figure="Out:-integrated_lufs"]')).toHaveText(/^-(19|20|21)\.\d LUFS$/);
  const download = page.waitForEvent("download");
  await task.getByRole("button", { name: "Download output" }).click();
  expect((await download).suggestedFilename()).toBe("dropped-normalized.flac");
});

test("cancel a long task, retry it, delete it", async ({ page, live, signIn }) => {
  const { access } = await live.tokens("carol");
  await live.upload(access, "long");
  await signIn("carol");
  await expect(page.locator("#audio-select")).toContainText(basename(live.audio.long));
  await page.getByRole("button", { name: "Start task" }).click();
  const task = page.locator("li.task").first();
  await expect(task).toHaveAttribute("data-state", "processing");
  await expect.poll(() => task.locator("progress").evaluate((p: HTMLProgressElement) => p.value)).toBeGreaterThan(0);
  await task.getByRole("button", { name: "Cancel" }).click();
  await expect(task).toHaveAttribute("data-state", "cancelled");
  await expect(task.getByRole("button", { name: "Cancel" })).toBeHidden();
  await task.getByRole("button", { name: "Retry" }).click();
  await expect(task).toHaveAttribute("data-state", /pending|processing/);
  page.once("dialog", (dialog) => dialog.accept());
  await task.getByRole("button", { name: "Delete" }).click();
  await expect(page.locator("li.task")).toHaveCount(0);
});

test("kill and restart the server mid-task: the page shows it and recovers without a reload", async ({ page, live, signIn }) => {
  const { access } = await live.tokens("alice");
  const audio = await live.upload(access, "long");
  await signIn("alice");
  await page.evaluate(() => {
    const w = window as unknown as { marker: number; statuses: string[] };
    w.marker = 42; // survives only if the page is never reloaded
    w.statuses = [];
    const badge = document.getElementById("connection")!;
    new MutationObserver(() => w.statuses.push(badge.dataset.status!)).observe(badge, { attributes: true });
  });
  const task = await live.createTask(access, audio);
  const bar = row(page, task.id);
  await expect(bar).toHaveAttribute("data-state", "processing");
  // A request that gets no answer says so in words (not the browser's "Failed to fetch")...
  await page.route("**/api/v1/tasks/", (route) => (route.request().method() === "POST" ? route.abort() : route.fallback()));
  await page.getByRole("button", { name: "Start task" }).click();
  await expect(page.locator("#task-error")).toHaveText(
    "The server cannot be reached. Check your connection; this clears once it is back.",
  );
  await page.unroute("**/api/v1/tasks/");
  await live.restart();
  // Live again, with the task caught up to its end, in the same document.
  await expect(page.locator("#connection")).toHaveText("Live");
  // ...and the sentence goes away once the connection is back.
  await expect(page.locator("#task-error")).toHaveText("");
  const statuses = await page.evaluate(() => (window as unknown as { statuses: string[] }).statuses);
  expect(statuses).toContain("reconnecting"); // the page showed that it was cut off
  expect(statuses.at(-1)).toBe("live");
  await expect(bar).toHaveAttribute("data-state", "completed", { timeout: 60_000 });
  await expect(bar.locator("progress")).toHaveJSProperty("value", 100);
  expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(42);
});

test("ten tasks at once: ten live bars over one stream request", async ({ page, live, signIn }) => {
  const streams: string[] = [];
  const listReads: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/api/v1/sse/")) streams.push(request.url());
    if (request.url().includes("/api/v1/tasks/?")) listReads.push(request.url());
  });
  const { access } = await live.tokens("dave");
  const audio = await live.upload(access, "medium");
  await signIn("dave");
  // Record every state each row shows, as it shows it.
  await page.evaluate(() => {
    const w = window as unknown as { shown: Record<string, string[]> };
    w.shown = {};
    new MutationObserver((records) => {
      for (const r of records) {
        const li = r.target as HTMLElement;
        if (li.dataset?.taskId && li.dataset.state) (w.shown[li.dataset.taskId] ??= []).push(li.dataset.state);
      }
    }).observe(document.getElementById("tasks")!, { attributes: true, subtree: true, attributeFilter: ["data-state"] });
  });
  const tasks = await Promise.all(Array.from({ length: 10 }, () => live.createTask(access, audio)));
  await expect(page.locator("li.task")).toHaveCount(10);
  for (const task of tasks) {
    await expect(row(page, task.id)).toHaveAttribute("data-state", "completed");
    await expect(row(page, task.id).locator("progress")).toHaveJSProperty("value", 100);
  }
  // Each bar went through processing on screen: the updates came live, not from a reload.
  const shown = await page.evaluate(() => (window as unknown as { shown: Record<string, string[]> }).shown);
  for (const task of tasks) expect(shown[task.id]).toContain("processing");
  expect(listReads).toHaveLength(1); // the list was read once, at sign-in; no polling
  // A task deleted elsewhere leaves the page through the same stream.
  await live.api("DELETE", `/api/v1/tasks/${tasks[3].id}/`, access);
  await expect(page.locator("li.task")).toHaveCount(9);
  await expect(row(page, tasks[3].id)).toHaveCount(0);
  expect(streams).toEqual([`${live.baseUrl}/api/v1/sse/tasks/progress`]);
});

test("a deactivated user is signed out with a message, not left with a dead page", async ({ page, live, signIn }) => {
  await signIn("frank");
  await live.shell(
    "from django.contrib.auth.models import User\n" +
      'u = User.objects.get(username="frank"); u.is_active = False; u.save()',
  );
  // The stream ends with `unauthenticated`; the refresh token is refused for an inactive user.
  await expect(page.locator("#sign-in-error")).toHaveText("Your session expired; please sign in again.");
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
  await expect(page.locator("#app")).toBeHidden();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
});

test("the service's policy blocks a script injected into the page", async ({ page, signIn }) => {
  await signIn("bob");
  await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.injected = true";
    document.body.append(script);
  });
  await expect
    .poll(() => page.evaluate(() => (window as unknown as { violations: string[] }).violations))
    .toEqual([expect.stringMatching(/^script-src-elem inline/)]);
  expect(await page.evaluate(() => (window as unknown as { injected?: boolean }).injected)).toBeUndefined();
  // Seen; the fixture checks that nothing else was blocked.
  await page.evaluate(() => void ((window as unknown as { violations: string[] }).violations = []));
});

test("signing out revokes the session's refresh token on the server", async ({ page, live, signIn }) => {
  await signIn("erin");
  const saved = await page.evaluate(() => JSON.parse(sessionStorage.getItem("audio-tasks.tokens") ?? "{}"));
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
  const res = await fetch(`${live.baseUrl}/api/v1/auth/token/refresh/`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh: saved.refresh }),
  });
  expect(res.status).toBe(401);
});
