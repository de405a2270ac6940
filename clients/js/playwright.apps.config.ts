import { defineConfig } from "@playwright/test";

/**
 * Browser tests of fresh Vite apps built from the packed tarball (`e2e/apps/`), run by
 * tests/test_browser_dashboard.py after it has packed, installed and built them into $APPS_DIR.
 */
export default defineConfig({
  testDir: "e2e/apps",
  outputDir: "test-results",
  workers: 1,
  timeout: 120_000,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  use: {
    headless: true,
    screenshot: { mode: "only-on-failure", fullPage: true },
    launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
