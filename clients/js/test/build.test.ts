/** The committed build output matches the TypeScript source, and the tarball ships what it should. */
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

describe("the published package", () => {
  const manifest = JSON.parse(readFileSync(resolve(PACKAGE, "package.json"), "utf8")) as Record<string, unknown>;

  it("npm pack ships the built code, its types, README, LICENSE and CHANGELOG, and nothing else", () => {
    const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PACKAGE, encoding: "utf8" });
    const [packed] = JSON.parse(out) as Array<{ name: string; version: string; files: Array<{ path: string }> }>;
    expect(packed.name).toBe("@audio-tasks/client");
    expect(packed.version).toBe(manifest.version);
    const modules = ["client", "index", "react", "store"].flatMap((m) => [`dist/${m}.d.ts`, `dist/${m}.js`]);
    expect(packed.files.map((f) => f.path).sort()).toEqual(["CHANGELOG.md", "LICENSE", "README.md", ...modules, "package.json"].sort());
  });

  it("declares a license, a repository, a version in the changelog, and react as an optional peer only", () => {
    expect(manifest.license).toBe("MIT");
    expect(readFileSync(resolve(PACKAGE, "LICENSE"), "utf8")).toMatch(/^MIT License/);
    expect(manifest.repository).toMatchObject({ type: "git", directory: "clients/js" });
    expect(readFileSync(resolve(PACKAGE, "CHANGELOG.md"), "utf8")).toContain(`## ${manifest.version as string}\n`);
    expect(manifest.peerDependencies).toEqual({ react: ">=18" });
    expect(manifest.peerDependenciesMeta).toEqual({ react: { optional: true } });
    expect(Object.keys(manifest.dependencies as object)).toEqual(["eventsource-parser"]);
    expect(Object.keys(manifest.exports as object)).toEqual([".", "./react", "./client", "./package.json"]);
  });

  it("the package root reaches no React through its imports; /react does", () => {
    const reached = (entry: string, seen = new Set<string>()): Set<string> => {
      const source = readFileSync(resolve(PACKAGE, "dist", entry), "utf8");
      for (const [, spec] of source.matchAll(/^(?:import|export)[^;]*?from\s+"([^"]+)"/gms)) {
        if (!spec.startsWith(".")) seen.add(spec);
        else if (!seen.has(spec)) {
          seen.add(spec);
          reached(spec.replace(/^\.\//, ""), seen);
        }
      }
      return seen;
    };
    const bare = (entry: string): string[] => [...reached(entry)].filter((s) => !s.startsWith(".")).sort();
    expect(bare("index.js")).toEqual(["eventsource-parser"]);
    expect(bare("react.js")).toEqual(["eventsource-parser", "react"]);
  });
});
