import { defineConfig } from "@playwright/test";

/** Browser tests of the dashboard: Debian's Chromium, headless, against a live service on loopback. */
export default defineConfig({
  testDir: "e2e",
  // The apps built from the packed tarball have their own config (playwright.apps.config.ts).
  testIgnore: "apps/**",
  outputDir: "test-results",
  workers: 1,
  timeout: 90_000,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  use: {
    headless: true,
    screenshot: { mode: "only-on-failure", fullPage: true },
    launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
