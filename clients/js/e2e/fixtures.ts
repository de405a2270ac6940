/** Playwright fixtures: one live service per worker, and signing in through the page. */
import { test as base, expect, type Page } from "@playwright/test";

import { LiveService } from "../test/live-service.js";

export const test = base.extend<{ signIn: (user: string) => Promise<Page> }, { live: LiveService }>({
  live: [
    async ({}, use) => {
      const live = await LiveService.start();
      await use(live);
      await live.stop();
    },
    { scope: "worker", timeout: 180_000 },
  ],
  signIn: async ({ page, live }, use) => {
    await use(async (user: string) => {
      await page.goto(live.baseUrl + "/");
      await page.getByLabel("User name").fill(user);
      await page.getByLabel("Password").fill(live.password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect(page.locator("#connection")).toHaveText("Live");
      return page;
    });
  },
});

export { expect };

/** The row of a task in the dashboard. */
export const row = (page: Page, taskId: string) => page.locator(`li.task[data-task-id="${taskId}"]`);
