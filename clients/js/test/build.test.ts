/** The committed build output (dist/ and the dashboard's bundle) matches the TypeScript source. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const PACKAGE = resolve(import.meta.dirname, "..");
const BUNDLE = resolve(PACKAGE, "../../tasks_app/static/tasks_app/audio-tasks-client.js");

describe("committed build output", () => {
  it("dist/ is what `npm run build` makes of src/", () => {
    const out = mkdtempSync(join(tmpdir(), "dist-"));
    try {
      execFileSync(resolve(PACKAGE, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json", "--outDir", out], { cwd: PACKAGE });
      const files = readdirSync(out).sort();
      expect(files).toEqual(readdirSync(resolve(PACKAGE, "dist")).sort());
      for (const file of files) {
        expect(readFileSync(resolve(PACKAGE, "dist", file), "utf8"), `dist/${file} is stale: npm run build`).toBe(readFileSync(join(out, file), "utf8"));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("the dashboard's bundle is what `npm run build` makes of src/client.ts", async () => {
    const result = await build({
      entryPoints: [resolve(PACKAGE, "src/client.ts")], bundle: true, format: "esm", target: "es2020",
      legalComments: "inline", write: false, absWorkingDir: PACKAGE, outfile: BUNDLE,
    });
    expect(readFileSync(BUNDLE, "utf8"), "audio-tasks-client.js is stale: npm run build").toBe(result.outputFiles[0].text);
  });
});
