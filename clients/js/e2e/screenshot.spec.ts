/** Not a test: `DOCS_SCREENSHOT=1 npx playwright test screenshot` refreshes docs/dashboard.png. */
import { resolve } from "node:path";

import { ROOT } from "../test/live-service.js";
import { expect, row, test } from "./fixtures.js";

test.skip(process.env.DOCS_SCREENSHOT !== "1", "set DOCS_SCREENSHOT=1 to refresh docs/dashboard.png");

test("docs screenshot: running and finished tasks", async ({ page, live, signIn }) => {
  await page.setViewportSize({ width: 1200, height: 900 });
  const { access } = await live.tokens("erin");
  const short = await live.upload(access, "short");
  const long = await live.upload(access, "long");
  await signIn("erin");
  const analyzed = await live.createTask(access, short);
  const normalized = await live.createTask(access, short, "normalize", { target_lufs: -16, output_format: "mp3" });
  await expect(row(page, normalized.id)).toHaveAttribute("data-state", "completed");
  await expect(row(page, analyzed.id).locator("canvas")).toHaveAttribute("data-drawn", "true");
  const running = await live.createTask(access, long);
  await live.createTask(access, long); // queued behind it: pending
  await expect
    .poll(() => row(page, running.id).locator("progress").evaluate((p: HTMLProgressElement) => p.value))
    .toBeGreaterThan(30);
  await page.locator("#tasks-title").scrollIntoViewIfNeeded();
  await page.screenshot({ path: resolve(ROOT, "docs/dashboard.png"), fullPage: true });
});
