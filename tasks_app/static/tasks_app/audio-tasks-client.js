// node_modules/eventsource-parser/dist/index.js
var ParseError = class extends Error {
  constructor(message, options) {
    super(message), this.name = "ParseError", this.type = options.type, this.field = options.field, this.value = options.value, this.line = options.line;
  }
};
function noop(_arg) {
}
function createParser(callbacks) {
  if (typeof callbacks == "function")
    throw new TypeError(
      "`callbacks` must be an object, got a function instead. Did you mean `{onEvent: fn}`?"
    );
  const { onEvent = noop, onError = noop, onRetry = noop, onComment } = callbacks;
  let incompleteLine = "", isFirstChunk = true, id, data = "", eventType = "";
  function feed(newChunk) {
    const chunk = isFirstChunk ? newChunk.replace(/^\xEF\xBB\xBF/, "") : newChunk, [complete, incomplete] = splitLines(`${incompleteLine}${chunk}`);
    for (const line of complete)
      parseLine(line);
    incompleteLine = incomplete, isFirstChunk = false;
  }
  function parseLine(line) {
    if (line === "") {
      dispatchEvent();
      return;
    }
    if (line.startsWith(":")) {
      onComment && onComment(line.slice(line.startsWith(": ") ? 2 : 1));
      return;
    }
    const fieldSeparatorIndex = line.indexOf(":");
    if (fieldSeparatorIndex !== -1) {
      const field = line.slice(0, fieldSeparatorIndex), offset = line[fieldSeparatorIndex + 1] === " " ? 2 : 1, value = line.slice(fieldSeparatorIndex + offset);
      processField(field, value, line);
      return;
    }
    processField(line, "", line);
  }
  function processField(field, value, line) {
    switch (field) {
      case "event":
        eventType = value;
        break;
      case "data":
        data = `${data}${value}
`;
        break;
      case "id":
        id = value.includes("\0") ? void 0 : value;
        break;
      case "retry":
        /^\d+$/.test(value) ? onRetry(parseInt(value, 10)) : onError(
          new ParseError(`Invalid \`retry\` value: "${value}"`, {
            type: "invalid-retry",
            value,
            line
          })
        );
        break;
      default:
        onError(
          new ParseError(
            `Unknown field "${field.length > 20 ? `${field.slice(0, 20)}\u2026` : field}"`,
            { type: "unknown-field", field, value, line }
          )
        );
        break;
    }
  }
  function dispatchEvent() {
    data.length > 0 && onEvent({
      id,
      event: eventType || void 0,
      // If the data buffer's last character is a U+000A LINE FEED (LF) character,
      // then remove the last character from the data buffer.
      data: data.endsWith(`
`) ? data.slice(0, -1) : data
    }), id = void 0, data = "", eventType = "";
  }
  function reset(options = {}) {
    incompleteLine && options.consume && parseLine(incompleteLine), isFirstChunk = true, id = void 0, data = "", eventType = "", incompleteLine = "";
  }
  return { feed, reset };
}
function splitLines(chunk) {
  const lines = [];
  let incompleteLine = "", searchIndex = 0;
  for (; searchIndex < chunk.length; ) {
    const crIndex = chunk.indexOf("\r", searchIndex), lfIndex = chunk.indexOf(`
`, searchIndex);
    let lineEnd = -1;
    if (crIndex !== -1 && lfIndex !== -1 ? lineEnd = Math.min(crIndex, lfIndex) : crIndex !== -1 ? crIndex === chunk.length - 1 ? lineEnd = -1 : lineEnd = crIndex : lfIndex !== -1 && (lineEnd = lfIndex), lineEnd === -1) {
      incompleteLine = chunk.slice(searchIndex);
      break;
    } else {
      const line = chunk.slice(searchIndex, lineEnd);
      lines.push(line), searchIndex = lineEnd + 1, chunk[searchIndex - 1] === "\r" && chunk[searchIndex] === `
` && searchIndex++;
    }
  }
  return [lines, incompleteLine];
}

// src/client.ts
var API = "/api/v1";
function subscribeToTask(taskId, options) {
  const id = encodeURIComponent(taskId);
  return openStream(`${API}/sse/tasks/${id}/progress`, `${API}/tasks/${id}/progress/`, options, true);
}
function subscribeToAllTasks(options) {
  return openStream(`${API}/sse/tasks/progress`, null, options, false);
}
function tokenExpiry(token) {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === "number" ? exp * 1e3 : null;
}
function tokenClaims(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}
var TokenRefreshError = class extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
    this.name = "TokenRefreshError";
  }
};
function createTokenManager(options) {
  let { access, refresh } = options;
  const margin = (options.marginSeconds ?? 60) * 1e3;
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  let inFlight = null;
  const refreshNow = () => {
    inFlight ?? (inFlight = (async () => {
      try {
        const res = await doFetch(`${options.baseUrl ?? ""}${API}/auth/token/refresh/`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh })
        });
        if (!res.ok) throw new TokenRefreshError(`Token refresh refused (HTTP ${res.status}).`, res.status);
        const body = await res.json();
        access = body.access;
        refresh = body.refresh ?? refresh;
        options.onTokens?.({ access, refresh });
        return access;
      } finally {
        inFlight = null;
      }
    })());
    return inFlight;
  };
  const dueAt = () => {
    const claims = tokenClaims(access);
    if (typeof claims?.exp !== "number") return null;
    const expiry = claims.exp * 1e3;
    const life = typeof claims.iat === "number" ? expiry - claims.iat * 1e3 : Infinity;
    return expiry - Math.min(margin, life / 2);
  };
  const fresh = () => {
    const due = dueAt();
    return due !== null && Date.now() >= due ? refreshNow() : Promise.resolve(access);
  };
  return {
    getToken: ({ forceRefresh }) => forceRefresh ? refreshNow() : fresh(),
    access: fresh,
    keepFresh() {
      let timer;
      let stopped = false;
      const plan = () => {
        const due = dueAt();
        if (stopped || due === null) return;
        timer = setTimeout(() => {
          fresh().then(plan, () => void 0);
        }, Math.max(1e3, due - Date.now()));
      };
      plan();
      return () => {
        stopped = true;
        clearTimeout(timer);
      };
    }
  };
}
var Stop = class {
  constructor(error) {
    this.error = error;
  }
};
var Retry = class {
  constructor(reason, waitMs = 0) {
    this.reason = reason;
    this.waitMs = waitMs;
  }
};
function openStream(path, pollPath, options, endsOnComplete) {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const base = options.baseUrl ?? "";
  const minDelay = options.retryDelayMs?.min ?? 250;
  const maxDelay = options.retryDelayMs?.max ?? 5e3;
  const margin = (options.refreshMarginSeconds ?? 30) * 1e3;
  const heartbeatTimeout = options.heartbeatTimeoutMs ?? 2e4;
  let lastEventId = options.lastEventId ?? null;
  let closed = false;
  let controller = null;
  let timer;
  let wake = null;
  let status = null;
  let statusReason = null;
  const setStatus = (next, reason = null) => {
    if (closed && next !== "closed" && next !== "error") return;
    if (status === next && sameReason(statusReason, reason)) return;
    status = next;
    statusReason = reason;
    options.onStatus?.(next, reason);
  };
  const pause = (ms) => new Promise((resolve) => {
    wake = resolve;
    timer = setTimeout(resolve, ms);
  });
  const run = async () => {
    let forceRefresh = false;
    let renewing = false;
    let refusedOnce = false;
    let failures = 0;
    let wasLive = false;
    setStatus("connecting");
    while (!closed) {
      let token;
      try {
        token = await options.getToken({ forceRefresh });
        if (renewing && !forceRefresh) {
          const expiry2 = tokenExpiry(token);
          if (expiry2 !== null && expiry2 - Date.now() <= margin) token = await options.getToken({ forceRefresh: true });
        }
      } catch (err) {
        throw new Stop({ code: "unauthenticated", message: errorText(err, "Could not get an access token.") });
      }
      if (closed) return;
      forceRefresh = false;
      renewing = false;
      const attempt = new AbortController();
      controller = attempt;
      let expiring = false;
      let silent = false;
      const expiry = tokenExpiry(token);
      let refreshTimer;
      if (expiry !== null) {
        const left = expiry - Date.now();
        const delay = Math.max(left - margin, left / 2);
        if (delay >= 1e3) {
          refreshTimer = setTimeout(() => {
            expiring = true;
            attempt.abort();
          }, delay);
        }
      }
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      let retry;
      try {
        let res;
        try {
          res = await doFetch(base + path, { headers, signal: attempt.signal, cache: "no-store" });
        } catch (err) {
          if (closed || expiring) throw err;
          throw new Retry(await unreachable(wasLive));
        }
        if (res.status === 204) {
          await res.body?.cancel();
          const final = pollPath ? await fetchFinal(base + pollPath, token) : null;
          if (final && !closed) options.onComplete?.(final);
          throw new Stop(null);
        }
        if (res.status === 401 && !refusedOnce) {
          refusedOnce = true;
          forceRefresh = true;
          await res.body?.cancel();
          continue;
        }
        if (res.status !== 200 || !res.body) {
          const error = await httpError(res);
          if (res.status === 429) throw new Retry(error, error.retryAfterMs);
          if (res.status >= 500 || res.status === 408) throw new Retry(error);
          throw new Stop(error);
        }
        refusedOnce = false;
        failures = 0;
        wasLive = true;
        const outcome = await readEvents(res.body, () => {
          silent = true;
          attempt.abort();
        });
        if (outcome === "reauthenticate") {
          forceRefresh = true;
          continue;
        }
        retry = new Retry(REASONS.connection_lost());
      } catch (err) {
        if (err instanceof Stop) throw err;
        if (closed) return;
        if (expiring) {
          renewing = true;
          continue;
        }
        if (silent) retry = new Retry(REASONS.silent(heartbeatTimeout));
        else if (err instanceof Retry) retry = err;
        else retry = new Retry(REASONS.connection_lost());
      } finally {
        clearTimeout(refreshTimer);
      }
      if (closed) return;
      if (retry.reason.code === "cors_refused") throw new Stop(retry.reason);
      setStatus("reconnecting", retry.reason);
      const backoff = Math.min(maxDelay, minDelay * 2 ** failures) * (0.8 + 0.4 * Math.random());
      failures += 1;
      await pause(Math.max(backoff, retry.waitMs));
    }
  };
  const unreachable = async (wasLive) => {
    const url = new URL(base + path, globalThis.location?.href ?? "http://localhost/");
    const origin = globalThis.location?.origin;
    if (globalThis.navigator?.onLine === false) return REASONS.offline();
    if (!wasLive && origin && url.origin !== origin) {
      try {
        await doFetch(url.href, { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(5e3) });
        return REASONS.cors_refused(url.origin, origin);
      } catch {
      }
    }
    return REASONS.unreachable(url.origin);
  };
  const readEvents = async (body, abort) => {
    let result = null;
    const parser = createParser({
      onEvent(message) {
        if (result !== null || closed) return;
        if (message.id) lastEventId = message.id;
        result = dispatch(message);
      }
    });
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(abort, heartbeatTimeout);
    };
    try {
      arm();
      while (result === null) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.feed(decoder.decode(value, { stream: true }));
        if (result === null) setStatus("live");
      }
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => void 0);
    }
    const outcome = result;
    if (outcome instanceof Stop) throw outcome;
    return outcome ?? "ended";
  };
  const newest = /* @__PURE__ */ new Map();
  const isStale = (progress) => {
    const at = Date.parse(progress.updated_at);
    const seen = newest.get(progress.task_id);
    if (seen !== void 0 && at < seen) return true;
    newest.set(progress.task_id, at);
    return false;
  };
  const dispatch = (message) => {
    const type = message.event ?? "message";
    if (type === "progress") {
      const progress = JSON.parse(message.data);
      if (!isStale(progress)) options.onProgress?.(progress);
    } else if (type === "complete") {
      const progress = JSON.parse(message.data);
      isStale(progress);
      options.onComplete?.(progress);
      if (endsOnComplete) return new Stop(null);
    } else if (type === "deleted") {
      options.onDeleted?.(JSON.parse(message.data).task_id);
    } else if (type === "error") {
      const error = JSON.parse(message.data);
      return error.code === "unauthenticated" ? "reauthenticate" : new Stop(error);
    }
    return null;
  };
  const stop = () => {
    closed = true;
    controller?.abort();
    clearTimeout(timer);
    wake?.();
  };
  run().then(
    () => setStatus("closed"),
    (err) => {
      const error = err instanceof Stop ? err.error : { code: "client_error", message: errorText(err, "Stream failed.") };
      const wasClosed = closed;
      stop();
      if (error && !wasClosed) {
        setStatus("error", error);
        options.onError?.(error);
      } else {
        setStatus("closed");
      }
    }
  );
  return {
    close() {
      if (closed) return;
      stop();
      setStatus("closed");
    },
    get lastEventId() {
      return lastEventId;
    }
  };
  async function fetchFinal(url, token) {
    try {
      const res = await doFetch(url, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      return res.ok ? await res.json() : null;
    } catch {
      return null;
    }
  }
}
var REASONS = {
  unreachable: (origin) => ({
    code: "unreachable",
    message: `The service at ${origin} cannot be reached (it is down, or the network is).`
  }),
  offline: () => ({ code: "unreachable", message: "This device is offline." }),
  cors_refused: (service, page) => ({
    code: "cors_refused",
    message: `The service at ${service} does not accept requests from ${page}: add that origin to its CORS_ALLOWED_ORIGINS.`
  }),
  connection_lost: () => ({ code: "connection_lost", message: "The connection to the service was lost." }),
  silent: (ms) => ({
    code: "silent",
    message: `Nothing came from the service for ${Math.round(ms / 1e3)} s, not even a keep-alive: the connection is presumed dead.`
  })
};
var STATUS_TEXT = {
  401: ["unauthenticated", "The service refused the access token (expired or revoked): sign in again."],
  403: ["forbidden", "The service refused access to this stream."],
  404: ["not_found", "The service knows no such task (or it belongs to another user)."],
  429: ["too_many_streams", "Too many streams are open for this user."]
};
async function httpError(res) {
  const [fallbackCode, fallbackText] = STATUS_TEXT[res.status] ?? (res.status >= 500 ? ["server_error", `The service failed (HTTP ${res.status}).`] : [`http_${res.status}`, `The service answered HTTP ${res.status}.`]);
  let code = fallbackCode;
  let message = fallbackText;
  try {
    const body = await res.json();
    if (body.error?.code && res.status !== 401) code = body.error.code;
    if (body.error?.message && res.status !== 401) message = body.error.message;
  } catch {
  }
  const error = { code, message, status: res.status };
  if (res.status === 429) {
    const wait = retryAfterMs(res.headers.get("Retry-After"));
    error.retryAfterMs = wait;
    error.message = `${message.replace(/\.?$/, ".")} Trying again in ${Math.ceil(wait / 1e3)} s.`;
  }
  return error;
}
function retryAfterMs(header) {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1e3;
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, at - Date.now());
  }
  return 5e3;
}
function sameReason(a, b) {
  return a?.code === b?.code && a?.message === b?.message;
}
function errorText(err, fallback) {
  return err instanceof Error && err.message ? err.message : fallback;
}
export {
  TokenRefreshError,
  createTokenManager,
  retryAfterMs,
  subscribeToAllTasks,
  subscribeToTask,
  tokenExpiry
};
