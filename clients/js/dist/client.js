/**
 * Subscribe to the audio task service's SSE progress streams from a browser (or Node 20).
 *
 * Transport: `fetch` with a streamed response body, not the native `EventSource`. That lets the
 * client send the short-lived access token in the `Authorization` header (never in a URL),
 * send `Last-Event-ID` itself, and see the HTTP status of every (re)connect: `204` (the task's
 * `complete` was already seen: stop), `401` (refresh the token once, then give up), `404`
 * (unknown or deleted task: stop), `429`/`5xx`/network errors (retry with backoff).
 */
import { createParser } from "eventsource-parser";
const API = "/api/v1";
/** Follow one task until `complete`, a final `error`, a `204`, a `404` or `close()`. */
export function subscribeToTask(taskId, options) {
    const id = encodeURIComponent(taskId);
    return openStream(`${API}/sse/tasks/${id}/progress`, `${API}/tasks/${id}/progress/`, options, true);
}
/** Follow every task of the caller over one connection (dashboards); runs until `close()`. */
export function subscribeToAllTasks(options) {
    return openStream(`${API}/sse/tasks/progress`, null, options, false);
}
/** Expiry of a JWT in ms since the epoch, or null when the token is not a readable JWT. */
export function tokenExpiry(token) {
    const exp = tokenClaims(token)?.exp;
    return typeof exp === "number" ? exp * 1000 : null;
}
/** The (unverified) claims of a JWT, or null. */
function tokenClaims(token) {
    const part = token.split(".")[1];
    if (!part)
        return null;
    try {
        const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
        const claims = JSON.parse(json);
        return claims && typeof claims === "object" ? claims : null;
    }
    catch {
        return null;
    }
}
/** Raised by the token manager when the refresh token itself is refused. */
export class TokenRefreshError extends Error {
    constructor(message, status) {
        super(message);
        this.status = status;
        this.name = "TokenRefreshError";
    }
}
/** Keep a simplejwt access/refresh pair fresh; concurrent refreshes share one request. */
export function createTokenManager(options) {
    let { access, refresh } = options;
    const margin = (options.marginSeconds ?? 60) * 1000;
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    let inFlight = null;
    const refreshNow = () => {
        inFlight ?? (inFlight = (async () => {
            try {
                const res = await doFetch(`${options.baseUrl ?? ""}${API}/auth/token/refresh/`, {
                    method: "POST",
                    headers: { "Content-Type": "application/json" },
                    body: JSON.stringify({ refresh }),
                });
                if (!res.ok)
                    throw new TokenRefreshError(`Token refresh refused (HTTP ${res.status}).`, res.status);
                const body = (await res.json());
                access = body.access;
                refresh = body.refresh ?? refresh;
                options.onTokens?.({ access, refresh });
                return access;
            }
            finally {
                inFlight = null;
            }
        })());
        return inFlight;
    };
    /** When the current access token is due for refresh (ms), or null for an unreadable one. */
    const dueAt = () => {
        const claims = tokenClaims(access);
        if (typeof claims?.exp !== "number")
            return null;
        const expiry = claims.exp * 1000;
        // A token that lives shorter than twice the margin is refreshed halfway through its life.
        const life = typeof claims.iat === "number" ? expiry - claims.iat * 1000 : Infinity;
        return expiry - Math.min(margin, life / 2);
    };
    const fresh = () => {
        const due = dueAt();
        return due !== null && Date.now() >= due ? refreshNow() : Promise.resolve(access);
    };
    return {
        getToken: ({ forceRefresh }) => (forceRefresh ? refreshNow() : fresh()),
        access: fresh,
        keepFresh() {
            let timer;
            let stopped = false;
            const plan = () => {
                const due = dueAt();
                if (stopped || due === null)
                    return;
                timer = setTimeout(() => {
                    fresh().then(plan, () => undefined);
                }, Math.max(1000, due - Date.now()));
            };
            plan();
            return () => {
                stopped = true;
                clearTimeout(timer);
            };
        },
    };
}
// ------------------------------------------------------------------------------------------
class Stop {
    constructor(error) {
        this.error = error;
    }
}
function openStream(path, pollPath, options, endsOnComplete) {
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const base = options.baseUrl ?? "";
    const minDelay = options.retryDelayMs?.min ?? 250;
    const maxDelay = options.retryDelayMs?.max ?? 5000;
    const margin = (options.refreshMarginSeconds ?? 30) * 1000;
    const heartbeatTimeout = options.heartbeatTimeoutMs ?? 45000;
    let lastEventId = options.lastEventId ?? null;
    let closed = false;
    let controller = null;
    let timer;
    let wake = null;
    let status = null;
    const setStatus = (next) => {
        if (status === next || (closed && next !== "closed"))
            return;
        status = next;
        options.onStatus?.(next);
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
        setStatus("connecting");
        while (!closed) {
            let token;
            try {
                token = await options.getToken({ forceRefresh });
                if (renewing && !forceRefresh) {
                    // The app may have refreshed already (e.g. a token manager's keepFresh); force a
                    // refresh only when what it gives is still about to expire.
                    const expiry = tokenExpiry(token);
                    if (expiry !== null && expiry - Date.now() <= margin)
                        token = await options.getToken({ forceRefresh: true });
                }
            }
            catch (err) {
                throw new Stop({ code: "unauthenticated", message: errorText(err, "Could not get an access token.") });
            }
            if (closed)
                return;
            forceRefresh = false;
            renewing = false;
            const attempt = new AbortController();
            controller = attempt;
            // Reconnect with a fresh token shortly before this one expires (the server would end
            // the stream with an `unauthenticated` event at expiry; this avoids the round trip).
            let expiring = false;
            const expiry = tokenExpiry(token);
            let refreshTimer;
            if (expiry !== null) {
                const left = expiry - Date.now();
                // Short-lived tokens: reconnect halfway through their remaining life instead.
                const delay = Math.max(left - margin, left / 2);
                if (delay >= 1000) {
                    refreshTimer = setTimeout(() => {
                        expiring = true;
                        attempt.abort();
                    }, delay);
                }
            }
            const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
            if (lastEventId)
                headers["Last-Event-ID"] = lastEventId;
            try {
                const res = await doFetch(base + path, { headers, signal: attempt.signal, cache: "no-store" });
                if (res.status === 204) {
                    // The server says this client has seen `complete` already.
                    await res.body?.cancel();
                    const final = pollPath ? await fetchFinal(base + pollPath, token) : null;
                    if (final && !closed)
                        options.onComplete?.(final);
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
                    if (res.status === 429 || res.status >= 500 || res.status === 408) {
                        throw new Retry();
                    }
                    throw new Stop(error);
                }
                refusedOnce = false;
                failures = 0;
                setStatus("open");
                const outcome = await readEvents(res.body, () => attempt.abort());
                if (outcome === "reauthenticate") {
                    forceRefresh = true;
                    continue;
                }
            }
            catch (err) {
                if (err instanceof Stop)
                    throw err;
                if (closed)
                    return;
                if (expiring) {
                    renewing = true;
                    continue;
                }
                // Network error, server gone, or a retryable status: back off and reconnect.
            }
            finally {
                clearTimeout(refreshTimer);
            }
            if (closed)
                return;
            setStatus("reconnecting");
            const delay = Math.min(maxDelay, minDelay * 2 ** failures);
            failures += 1;
            await pause(delay * (0.8 + 0.4 * Math.random()));
        }
    };
    /** Read events until the response ends; "reauthenticate" after an `unauthenticated` event. */
    const readEvents = async (body, abort) => {
        let result = null;
        const parser = createParser({
            onEvent(message) {
                if (result !== null || closed)
                    return;
                if (message.id)
                    lastEventId = message.id;
                result = dispatch(message);
            },
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
                if (done)
                    break;
                arm();
                parser.feed(decoder.decode(value, { stream: true }));
            }
        }
        finally {
            clearTimeout(watchdog);
            reader.cancel().catch(() => undefined);
        }
        const outcome = result;
        if (outcome instanceof Stop)
            throw outcome;
        return outcome ?? "ended";
    };
    // On a resume the server sends the current state first (a snapshot without an id), then the
    // events missed since Last-Event-ID, which are older than that snapshot. Pass on only what
    // is not older than the newest state already passed on, so a bar never moves backwards.
    const newest = new Map();
    const isStale = (progress) => {
        const at = Date.parse(progress.updated_at);
        const seen = newest.get(progress.task_id);
        if (seen !== undefined && at < seen)
            return true;
        newest.set(progress.task_id, at);
        return false;
    };
    const dispatch = (message) => {
        const type = message.event ?? "message";
        if (type === "progress") {
            const progress = JSON.parse(message.data);
            if (!isStale(progress))
                options.onProgress?.(progress);
        }
        else if (type === "complete") {
            const progress = JSON.parse(message.data);
            isStale(progress);
            options.onComplete?.(progress);
            if (endsOnComplete)
                return new Stop(null);
        }
        else if (type === "deleted") {
            options.onDeleted?.(JSON.parse(message.data).task_id);
        }
        else if (type === "error") {
            const error = JSON.parse(message.data);
            // Final for this connection; only an expired token is worth a new one.
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
    run().then(() => setStatus("closed"), (err) => {
        const error = err instanceof Stop ? err.error : { code: "client_error", message: errorText(err, "Stream failed.") };
        const wasClosed = closed;
        stop();
        setStatus("closed");
        if (error && !wasClosed)
            options.onError?.(error);
    });
    return {
        close() {
            if (closed)
                return;
            stop();
            setStatus("closed");
        },
        get lastEventId() {
            return lastEventId;
        },
    };
    async function fetchFinal(url, token) {
        try {
            const res = await doFetch(url, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
            return res.ok ? (await res.json()) : null;
        }
        catch {
            return null;
        }
    }
}
class Retry extends Error {
}
async function httpError(res) {
    try {
        const body = (await res.json());
        if (body.error?.code) {
            // A refused token is `unauthenticated`, like the server's final `error` event.
            const code = res.status === 401 ? "unauthenticated" : body.error.code;
            return { code, message: body.error.message ?? "", status: res.status };
        }
    }
    catch {
        // Not JSON: fall through.
    }
    return { code: `http_${res.status}`, message: `HTTP ${res.status}`, status: res.status };
}
function errorText(err, fallback) {
    return err instanceof Error && err.message ? err.message : fallback;
}
