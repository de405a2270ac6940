/** A finished task's webhook deliveries on the dashboard: listed with their outcome, sent again on request. */
import { expect, row, test } from "./fixtures.js";

test("a finished task shows its webhook deliveries and sends one again", async ({ page, live, signIn }) => {
  await live.shell(
    "from django.contrib.auth import get_user_model as g; " +
      `g().objects.create_user("heidi", password=${JSON.stringify(live.password)})`,
  );
  const { access } = await live.tokens("heidi");
  // A name that never resolves: accepted (it may resolve later), and every attempt fails.
  await live.api("POST", "/api/v1/webhooks/", access, {
    url: "https://hooks.example.invalid/audio",
    events: ["task.completed"],
  });
  const task = await live.createTask(access, await live.upload(access, "short"));
  await signIn("heidi");
  const taskRow = row(page, task.id);
  await expect(taskRow).toHaveAttribute("data-state", "completed");
  const box = taskRow.locator("details.webhooks");
  const delivery = box.locator("tbody tr").first();
  // Opening the box loads the list; reopen it until the worker's first attempt shows.
  await expect(async () => {
    if (await box.evaluate((d: HTMLDetailsElement) => d.open)) await box.locator("summary").click();
    await box.locator("summary").click();
    await expect(delivery).toContainText("could not be resolved", { timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
  await expect(delivery).toContainText("task.completed");
  await expect(delivery).toContainText("https://hooks.example.invalid/audio");
  await expect(delivery).toHaveAttribute("data-status", "pending");
  await expect(delivery).toContainText("retry");
  await delivery.getByRole("button", { name: "Redeliver" }).click();
  await expect(box.locator(".webhook-status")).toHaveText("");
  await expect(box.locator("tbody tr")).toHaveCount(1);
});
