/**
 * A scripted stand-in for the SSE endpoint (the "fake EventSource"): it plays the server side of
 * the fetch-based transport, one request at a time, so tests control every event, status,
 * disconnect and token check.
 */
export interface RecordedRequest {
  url: string;
  headers: Record<string, string>;
  signal: AbortSignal | undefined;
  /** The fetch `mode` (`no-cors` for the client's reachability probe). */
  mode: RequestMode | undefined;
  /** Answer with a status, an optional JSON body (204, 401, 404, polling JSON, …) and headers. */
  respond(status: number, body?: unknown, headers?: Record<string, string>): void;
  /** No answer at all: what `fetch` does when the server is down or CORS refuses the page. */
  refuse(): void;
  /** Answer 200 and return the stream to write events into. */
  open(): FakeStream;
}

export interface FakeStream {
  send(event: string, data: unknown, id?: string): void;
  /** Several events in one chunk, as the server writes a snapshot. */
  sendAll(events: Array<[event: string, data: unknown, id?: string]>): void;
  comment(text: string): void;
  /** The server ends the response. */
  end(): void;
  /** The connection breaks (server killed). */
  fail(): void;
}

export class FakeSseServer {
  readonly requests: RecordedRequest[] = [];
  private waiting: Array<() => void> = [];

  readonly fetch: typeof fetch = (input, init) => {
    const url = String(input);
    const headers = Object.fromEntries(
      Object.entries((init?.headers ?? {}) as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]),
    );
    const signal = init?.signal ?? undefined;
    return new Promise<Response>((resolve, reject) => {
      const abortError = (): DOMException => new DOMException("aborted", "AbortError");
      signal?.addEventListener("abort", () => reject(abortError()));
      const request: RecordedRequest = {
        url,
        headers,
        signal,
        mode: init?.mode,
        respond(status, body, extra = {}) {
          const text = body === undefined ? null : JSON.stringify(body);
          resolve(new Response(status === 204 ? null : text, { status, headers: { "content-type": "application/json", ...extra } }));
        },
        refuse: () => reject(new TypeError("Failed to fetch")),
        open() {
          let controller!: ReadableStreamDefaultController<Uint8Array>;
          const encoder = new TextEncoder();
          const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
          signal?.addEventListener("abort", () => {
            try {
              controller.error(abortError());
            } catch {
              // already closed
            }
          });
          resolve(new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } }));
          const write = (text: string): void => controller.enqueue(encoder.encode(text));
          const frame = (event: string, data: unknown, id?: string): string =>
            `event: ${event}\n${id ? `id: ${id}\n` : ""}data: ${JSON.stringify(data)}\n\n`;
          return {
            send: (event, data, id) => write(frame(event, data, id)),
            sendAll: (events) => write(events.map((e) => frame(...e)).join("")),
            comment: (text) => write(`: ${text}\n\n`),
            end: () => controller.close(),
            fail: () => controller.error(new TypeError("network error")),
          };
        },
      };
      this.requests.push(request);
      this.waiting.splice(0).forEach((wake) => wake());
    });
  };

  /** Wait (up to `timeoutMs`) until request number `index` (0-based) has arrived. */
  async request(index: number, timeoutMs = 2000): Promise<RecordedRequest> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length <= index) {
      if (Date.now() > deadline) throw new Error(`request #${index} never came (got ${this.requests.length})`);
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        setTimeout(resolve, 20);
      });
    }
    return this.requests[index];
  }
}

/** A fake unsigned JWT whose `exp` is `secondsLeft` from now, issued `lifetime` s before that. */
export function fakeJwt(secondsLeft: number, name = "t", lifetime = secondsLeft): string {
  const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const exp = Math.floor(Date.now() / 1000) + secondsLeft;
  return `${b64({ alg: "none" })}.${b64({ exp, iat: exp - lifetime, name })}.sig`;
}

/** A TaskProgress payload. */
export function progress(taskId: string, value: number, state = "processing"): Record<string, unknown> {
  return {
    task_id: taskId, state, progress: value, estimated_time: null,
    updated_at: new Date().toISOString(), stage: "analyze", error: null, attempts: 1,
  };
}

/** Resolve when `check()` is truthy; fail after `timeoutMs`. */
export async function waitFor<T>(check: () => T, what: string, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
