/** The dashboard's words (tasks_app/static/tasks_app/format.js): ETAs and error sentences. */
import { describe, expect, it } from "vitest";

import { errorText, formatEta } from "../../../tasks_app/static/tasks_app/format.js";

describe("the dashboard's ETA", () => {
  it("never says 0 s while work remains", () => {
    expect(formatEta(0.4)).toBe("almost done");
    expect(formatEta(0)).toBe("almost done");
    expect(formatEta(1.4)).toBe("about 1 s left");
    expect(formatEta(125)).toBe("about 2 min 5 s left");
  });

  it("says nothing when the server does not know", () => {
    expect(formatEta(null)).toBe("");
    expect(formatEta(undefined)).toBe("");
  });
});

describe("the dashboard's error sentences", () => {
  const response = (status: number, body: string): Response => new Response(body, { status });

  it("uses the server's message and field", async () => {
    const body = JSON.stringify({ error: { code: "invalid", message: "Not an audio file.", field: "file" } });
    expect(await errorText(response(400, body))).toBe("file: Not an audio file.");
  });

  it("turns a bare status into a sentence", async () => {
    expect(await errorText(response(502, "<html>Bad gateway</html>"))).toBe("The server had a problem (HTTP 502). Try again in a moment.");
    expect(await errorText(response(403, "{}"))).toBe("The server refused the request (HTTP 403).");
  });
});
