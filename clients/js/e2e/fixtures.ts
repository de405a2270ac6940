/** Playwright fixtures: one live service per worker, and signing in through the page. */
import { test as base, expect, type Page } from "@playwright/test";

import { LiveService } from "../test/live-service.js";

export const test = base.extend<
  { signIn: (user: string) => Promise<Page>; strictPage: void },
  { live: LiveService }
>({
  // Every test runs under the Content-Security-Policy the service sends, and fails on a CSP
  // violation or an uncaught error in the page.
  strictPage: [
    async ({ page, live }, use) => {
      await page.addInitScript(() => {
        const w = window as unknown as { violations: string[] };
        w.violations = [];
        document.addEventListener("securitypolicyviolation", (e) => w.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
      });
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(error.message));
      const policies: string[] = [];
      page.on("response", (response) => {
        if (response.url() === `${live.baseUrl}/`) policies.push(response.headers()["content-security-policy"] ?? "");
      });
      await use();
      expect(errors).toEqual([]);
      // The page really was served under a policy that forbids inline scripts.
      for (const policy of policies) expect(policy).toMatch(/(^|; )script-src 'self'(;|$)/);
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
