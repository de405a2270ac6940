/** The audio tasks service's browser client: SSE subscriptions, token refresh, React hook. */
export * from "./client.js";
export * from "./react.js";
