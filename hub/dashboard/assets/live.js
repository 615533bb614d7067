// Keeps the WatchFleet stream open: feeds every message to the store,
// and when the stream ends or fails, says so and reconnects with backoff
// until a new snapshot arrives.

import { watchFleet } from "./api.js";
import { fleet } from "./store.js";

// The first reconnect waits firstRetryMs, each next one twice as long, up
// to lastRetryMs: a restarting hub is back within seconds, and a thousand
// open dashboards must not hammer one that is not.
const firstRetryMs = 1000;
const lastRetryMs = 15000;
// The hub sends a message at least every 15 s; after silenceMs without
// one the connection is taken for dead (a network that drops packets
// without closing it) and replaced.
const silenceMs = 40000;

// startLive opens the stream and calls onState with {state: "live"} on
// each snapshot and {state: "lost", since, reason} on each failure, since
// being when the hub was first lost. It returns the function that stops
// it. A session that is gone stops it too (api.js shows the sign-in form).
export function startLive(onState) {
  let stopped = false;
  let controller = null;
  let wake = () => {};

  const stop = () => {
    stopped = true;
    controller?.abort();
    wake();
  };

  (async () => {
    let retryMs = firstRetryMs;
    let lostAt = null;
    while (!stopped) {
      controller = new AbortController();
      const attempt = controller;
      let silent = false;
      let watchdog = 0;
      const rearm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => { silent = true; attempt.abort(); }, silenceMs);
      };
      let reason = "the hub ended the stream";
      rearm();
      try {
        await watchFleet((message) => {
          fleet.apply(message);
          if (message.snapshot) {
            retryMs = firstRetryMs;
            lostAt = null;
            onState({ state: "live" });
          }
        }, attempt.signal, rearm);
      } catch (err) {
        if (err.code === "unauthenticated") stopped = true;
        reason = silent ? `no word from the hub for ${silenceMs / 1000} s` : err.message;
      } finally {
        clearTimeout(watchdog);
      }
      if (stopped) return;
      lostAt ??= new Date();
      onState({ state: "lost", since: lostAt, reason });
      await new Promise((resolve) => {
        // Between half and one and a half times retryMs: the dashboards
        // a restarted hub lost do not all come back at once.
        const timer = setTimeout(resolve, retryMs * (0.5 + Math.random()));
        wake = () => { clearTimeout(timer); resolve(); };
      });
      retryMs = Math.min(retryMs * 2, lastRetryMs);
    }
  })();
  return stop;
}
