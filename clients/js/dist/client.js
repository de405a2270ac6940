/**
 * Subscribe to the audio task service's SSE progress streams from a browser (or Node 20).
 *
 * Transport: `fetch` with a streamed response body, not the native `EventSource`. That lets the
 * client send the short-lived access token in the `Authorization` header (never in a URL),
 * send `Last-Event-ID` itself, and see the HTTP status of every (re)connect: `204` (the task's
 * `complete` was already seen: stop), `401` (refresh the token once, then give up), `404`
 * (unknown or deleted task: stop), `429` (wait `Retry-After`), `5xx`/network errors (retry
 * with backoff). This module imports no UI framework; the React hooks live in `./react`.
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
/** End the subscription: normally (`error` null, status `closed`) or for good (status `error`). */
class Stop {
    constructor(error) {
        this.error = error;
    }
}
/** Try again after the backoff, or after `waitMs` when the server said how long (429). */
class Retry {
    constructor(reason, waitMs = 0) {
        this.reason = reason;
        this.waitMs = waitMs;
    }
}
function openStream(path, pollPath, options, endsOnComplete) {
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const base = options.baseUrl ?? "";
    const minDelay = options.retryDelayMs?.min ?? 250;
    const maxDelay = options.retryDelayMs?.max ?? 5000;
    const margin = (options.refreshMarginSeconds ?? 30) * 1000;
    const heartbeatTimeout = options.heartbeatTimeoutMs ?? 20000;
    let lastEventId = options.lastEventId ?? null;
    let closed = false;
    let controller = null;
    let timer;
    let wake = null;
    let status = null;
    let statusReason = null;
    const setStatus = (next, reason = null) => {
        if (closed && next !== "closed" && next !== "error")
            return;
        if (status === next && sameReason(statusReason, reason))
            return;
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
            let silent = false;
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
            let retry;
            try {
                let res;
                try {
                    res = await doFetch(base + path, { headers, signal: attempt.signal, cache: "no-store" });
                }
                catch (err) {
                    if (closed || expiring)
                        throw err;
                    throw new Retry(await unreachable(wasLive));
                }
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
                    if (res.status === 429)
                        throw new Retry(error, error.retryAfterMs);
                    if (res.status >= 500 || res.status === 408)
                        throw new Retry(error);
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
                if (silent)
                    retry = new Retry(REASONS.silent(heartbeatTimeout));
                else if (err instanceof Retry)
                    retry = err;
                else
                    retry = new Retry(REASONS.connection_lost());
            }
            finally {
                clearTimeout(refreshTimer);
            }
            if (closed)
                return;
            if (retry.reason.code === "cors_refused")
                throw new Stop(retry.reason);
            setStatus("reconnecting", retry.reason);
            const backoff = Math.min(maxDelay, minDelay * 2 ** failures) * (0.8 + 0.4 * Math.random());
            failures += 1;
            await pause(Math.max(backoff, retry.waitMs));
        }
    };
    /**
     * Why a request got no answer. Browsers hide the cause of a failed fetch; for a request to
     * another origin, a `no-cors` probe of the same URL tells a server that is up but refuses
     * this origin (CORS) from one that is not there. Only before the first success: a stream
     * that was live and broke is a lost connection, not a policy.
     */
    const unreachable = async (wasLive) => {
        const url = new URL(base + path, globalThis.location?.href ?? "http://localhost/");
        const origin = globalThis.location?.origin;
        if (globalThis.navigator?.onLine === false)
            return REASONS.offline();
        if (!wasLive && origin && url.origin !== origin) {
            try {
                await doFetch(url.href, { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(5000) });
                return REASONS.cors_refused(url.origin, origin);
            }
            catch {
                // Not there at all.
            }
        }
        return REASONS.unreachable(url.origin);
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
                // Live once the first chunk (the server's snapshot, or a keep-alive) is in: by then
                // the current state of every task the stream covers has been passed on.
                if (result === null)
                    setStatus("live");
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
        if (error && !wasClosed) {
            setStatus("error", error);
            options.onError?.(error);
        }
        else {
            setStatus("closed");
        }
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
/** The sentences behind the client's own reason codes. */
const REASONS = {
    unreachable: (origin) => ({
        code: "unreachable",
        message: `The service at ${origin} cannot be reached (it is down, or the network is).`,
    }),
    offline: () => ({ code: "unreachable", message: "This device is offline." }),
    cors_refused: (service, page) => ({
        code: "cors_refused",
        message: `The service at ${service} does not accept requests from ${page}: add that origin to its CORS_ALLOWED_ORIGINS.`,
    }),
    connection_lost: () => ({ code: "connection_lost", message: "The connection to the service was lost." }),
    silent: (ms) => ({
        code: "silent",
        message: `Nothing came from the service for ${Math.round(ms / 1000)} s, not even a keep-alive: the connection is presumed dead.`,
    }),
};
/** What an HTTP status means for a person, when the server's body does not say. */
const STATUS_TEXT = {
    401: ["unauthenticated", "The service refused the access token (expired or revoked): sign in again."],
    403: ["forbidden", "The service refused access to this stream."],
    404: ["not_found", "The service knows no such task (or it belongs to another user)."],
    429: ["too_many_streams", "Too many streams are open for this user."],
};
async function httpError(res) {
    const [fallbackCode, fallbackText] = STATUS_TEXT[res.status] ?? (res.status >= 500 ? ["server_error", `The service failed (HTTP ${res.status}).`] : [`http_${res.status}`, `The service answered HTTP ${res.status}.`]);
    let code = fallbackCode;
    let message = fallbackText;
    try {
        const body = (await res.json());
        // A refused token is `unauthenticated`, like the server's final `error` event, and its
        // sentence is ours: simplejwt's ("Given token not valid for any token type") helps no one.
        if (body.error?.code && res.status !== 401)
            code = body.error.code;
        if (body.error?.message && res.status !== 401)
            message = body.error.message;
    }
    catch {
        // Not JSON: keep the sentence for the status.
    }
    const error = { code, message, status: res.status };
    if (res.status === 429) {
        const wait = retryAfterMs(res.headers.get("Retry-After"));
        error.retryAfterMs = wait;
        error.message = `${message.replace(/\.?$/, ".")} Trying again in ${Math.ceil(wait / 1000)} s.`;
    }
    return error;
}
/** `Retry-After` (seconds or an HTTP date) in ms; 5 s when absent or unreadable. */
export function retryAfterMs(header) {
    if (header) {
        const seconds = Number(header);
        if (Number.isFinite(seconds) && seconds >= 0)
            return seconds * 1000;
        const at = Date.parse(header);
        if (!Number.isNaN(at))
            return Math.max(0, at - Date.now());
    }
    return 5000;
}
function sameReason(a, b) {
    return a?.code === b?.code && a?.message === b?.message;
}
function errorText(err, fallback) {
    return err instanceof Error && err.message ? err.message : fallback;
}
