/** Playwright fixtures: one live service per worker, and signing in through the page. */
import { test as base, expect, type Page } from "@playwright/test";

import { LiveService } from "../test/live-service.js";

/** A strict policy like the one the service's headers set: the page must run under it unchanged. */
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

export const test = base.extend<
  { signIn: (user: string) => Promise<Page>; strictPage: void },
  { live: LiveService }
>({
  // Every test: serve the dashboard with the strict CSP, and fail on CSP violations or
  // uncaught errors in the page.
  strictPage: [
    async ({ page, live }, use) => {
      await page.route(`${live.baseUrl}/`, async (route) => {
        const response = await route.fetch();
        await route.fulfill({ response, headers: { ...response.headers(), "content-security-policy": CSP } });
      });
      await page.addInitScript(() => {
        const w = window as unknown as { violations: string[] };
        w.violations = [];
        document.addEventListener("securitypolicyviolation", (e) => w.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
      });
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(error.message));
      await use();
      expect(errors).toEqual([]);
      if (page.url().startsWith(live.baseUrl)) {
        expect(await page.evaluate(() => (window as unknown as { violations: string[] }).violations)).toEqual([]);
      }
    },
    { auto: true },
  ],
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
