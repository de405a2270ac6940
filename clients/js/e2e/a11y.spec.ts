/** axe in Chromium: no serious or critical violation, light and dark, wide and narrow, every kind of row. */
import AxeBuilder from "@axe-core/playwright";
import type { Page } from "@playwright/test";

import { expect, row, test } from "./fixtures.js";

const SCHEMES = ["light", "dark"] as const;
const WIDTHS = [1280, 390];

/** Run axe in every scheme and width; collect what is serious or critical, named by where. */
async function seriousViolations(page: Page, where: string): Promise<string[]> {
  const found: string[] = [];
  for (const colorScheme of SCHEMES) {
    for (const width of WIDTHS) {
      await page.emulateMedia({ colorScheme });
      await page.setViewportSize({ width, height: 900 });
      const { violations } = await new AxeBuilder({ page }).analyze();
      for (const v of violations.filter((v) => v.impact === "serious" || v.impact === "critical")) {
        found.push(`${where} ${colorScheme} ${width}px: ${v.id} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
      }
    }
  }
  return found;
}

test("sign-in, an empty list, and running, failed and completed rows pass axe", async ({ page, live, signIn }) => {
  await live.shell(
    "from django.contrib.auth.models import User\n" +
      `u, _ = User.objects.get_or_create(username="grace"); u.set_password("${live.password}"); u.save()`,
  );
  await page.goto(live.baseUrl + "/");
  const found = await seriousViolations(page, "sign-in");
  await signIn("grace");
  await expect(page.locator("#no-tasks")).toBeVisible();
  found.push(...(await seriousViolations(page, "empty list")));

  const { access } = await live.tokens("grace");
  const completed = await live.createTask(access, await live.upload(access, "short"));
  await expect(row(page, completed.id)).toHaveAttribute("data-state", "completed");
  await expect(row(page, completed.id).locator("canvas")).toHaveAttribute("data-drawn", "true");
  // A running and a failed task, held in those states (no job runs them).
  const ids = (
    await live.shell(
      "from django.contrib.auth.models import User\n" +
        "from tasks_app.models import AudioFile, Task\n" +
        "from tasks_app import services\n" +
        'u = User.objects.get(username="grace"); a = AudioFile.objects.filter(owner=u).first()\n' +
        "running, failed = (Task.objects.create(owner=u, audio_file=a) for _ in range(2))\n" +
        "services.task_start(task_id=running.id); services.task_start(task_id=failed.id)\n" +
        "services.task_report_progress(task_id=running.id, attempt=1, progress=42.5, stage='decoding', estimated_time=12.0)\n" +
        "services.task_fail(task_id=failed.id, error='The file could not be decoded: it ends early.')\n" +
        "print(running.id, failed.id)",
    )
  ).trim().split("\n").pop()!.split(" ");
  await expect(row(page, ids[0])).toHaveAttribute("data-state", "processing");
  await expect(row(page, ids[0]).locator(".eta")).toHaveText("about 12 s left");
  await expect(row(page, ids[1])).toHaveAttribute("data-state", "failed");
  await expect(row(page, ids[1]).locator(".task-error")).toHaveText("The file could not be decoded: it ends early.");
  found.push(...(await seriousViolations(page, "rows")));
  expect(found).toEqual([]);
});
