/**
 * Start the real service (Daphne + worker on a free loopback port, fresh database) through
 * `python -m tests.serve_live`, and talk to it: tokens, uploads, tasks, restart, manage.py.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { createInterface } from "node:readline";

export const ROOT = resolve(import.meta.dirname, "../../..");

export interface TaskJson {
  id: string;
  state: string;
  [key: string]: unknown;
}

/** The Python that runs the service: $PYTHON, else the repository's .venv, else python3. */
export function python(): string {
  const venv = resolve(ROOT, ".venv/bin/python");
  return process.env.PYTHON ?? (existsSync(venv) ? venv : "python3");
}

export class LiveService {
  private pending: Array<(line: string) => void> = [];

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    lines: AsyncIterableIterator<string>,
    readonly baseUrl: string,
    readonly password: string,
    readonly audio: Record<"short" | "medium" | "long", string>,
  ) {
    void (async () => {
      for await (const line of lines) this.pending.shift()?.(line);
    })();
  }

  /** Start the service; resolves once it answers HTTP. */
  static async start(): Promise<LiveService> {
    const proc = spawn(python(), ["-m", "tests.serve_live"], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
    const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    const first = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => proc.on("exit", (code) => reject(new Error(`service exited ${code}: ${stderr}`)))),
    ]);
    if (first.done) {
      await new Promise((resolveExit) => (proc.exitCode === null ? proc.on("exit", resolveExit) : resolveExit(null)));
      throw new Error(`the live service did not start:\n${stderr}`);
    }
    const info = JSON.parse(first.value as string) as { base_url: string; password: string; audio: LiveService["audio"] };
    return new LiveService(proc, lines, info.base_url, info.password, info.audio);
  }

  private command(args: string[]): Promise<Record<string, unknown>> {
    return new Promise((resolveLine) => {
      this.pending.push((line) => resolveLine(JSON.parse(line) as Record<string, unknown>));
      this.proc.stdin.write(`${JSON.stringify(args)}\n`);
    });
  }

  /** Kill Daphne and start a new one on the same port (the worker keeps running). */
  async restart(): Promise<void> {
    await this.command(["restart"]);
  }

  /** Run a management command against the service's database. */
  async manage(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return (await this.command(["manage", ...args])) as { code: number; stdout: string; stderr: string };
  }

  /** Run Python in `manage.py shell`; fails the test when it fails. */
  async shell(code: string): Promise<string> {
    const done = await this.manage("shell", "-c", code);
    if (done.code !== 0) throw new Error(done.stderr);
    return done.stdout;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolveExit) => this.proc.on("exit", resolveExit));
    this.proc.stdin.end(`${JSON.stringify(["stop"])}\n`);
    await exited;
  }

  /** POST auth/token/ for a user: `{access, refresh}`. */
  async tokens(username: string): Promise<{ access: string; refresh: string }> {
    return (await this.api("POST", "/api/v1/auth/token/", null, { username, password: this.password })) as {
      access: string; refresh: string;
    };
  }

  /** A JSON API call; throws on a status other than 2xx. */
  async api(method: string, path: string, token: string | null, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    return res.status === 204 ? null : res.json();
  }

  /** Upload one of the prepared audio files; returns its id. */
  async upload(token: string, which: keyof LiveService["audio"]): Promise<number> {
    const path = this.audio[which];
    const form = new FormData();
    form.append("file", new Blob([readFileSync(path)]), basename(path));
    const res = await fetch(`${this.baseUrl}/api/v1/audio/`, {
      method: "POST", headers: { Authorization: `Bearer ${token}` }, body: form,
    });
    if (res.status !== 201) throw new Error(`upload: HTTP ${res.status} ${await res.text()}`);
    return ((await res.json()) as { id: number }).id;
  }

  async createTask(token: string, audioId: number, kind = "analyze", options = {}): Promise<TaskJson> {
    return (await this.api("POST", "/api/v1/tasks/", token, { audio_file: audioId, kind, options })) as TaskJson;
  }
}
