// What the dashboard says in words: ETAs, durations, and errors a person can act on.

/** "about 2 min 5 s left"; never "0 s" while work remains; "" when unknown. */
export function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  // The estimate is seconds of work left: below half a second it would round to "0 s".
  if (seconds < 1) return "almost done";
  const s = Math.round(seconds);
  return s >= 60 ? `about ${Math.floor(s / 60)} min ${s % 60} s left` : `about ${s} s left`;
}

/** "1:05" for 65 seconds. */
export function formatDuration(seconds) {
  const s = Math.round(seconds ?? 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** The sentence for a request that got no answer at all (fetch throws a bare "Failed to fetch"). */
export const UNREACHABLE = "The server cannot be reached. Check your connection; this clears once it is back.";

/** The sentence for an API error response: the server's message, or one for its status. */
export async function errorText(res) {
  let error = {};
  try {
    error = (await res.json()).error ?? {};
  } catch {
    // Not JSON (a proxy's error page): say what the status means.
  }
  if (error.message) {
    return error.field && error.field !== "non_field_errors" ? `${error.field}: ${error.message}` : error.message;
  }
  if (res.status >= 500) return `The server had a problem (HTTP ${res.status}). Try again in a moment.`;
  if (res.status === 429) return "Too many requests; wait a moment and try again.";
  return `The server refused the request (HTTP ${res.status}).`;
}
