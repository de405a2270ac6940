/**
 * The audio tasks service's client: SSE subscriptions, token refresh, and a store that follows
 * many tasks over one stream. Imports no UI framework; React hooks are in `./react`.
 */
export * from "./client.js";
export * from "./store.js";
