// The hub's API as the dashboard calls it: Connect unary calls in JSON,
// the WatchFleet server stream, and the session endpoints. The session
// cookie is HttpOnly: the browser sends it, this code never sees it.

const service = "/flotilla.v1.HubService/";

// ApiError is a refused or failed call. code is Connect's
// ("unauthenticated", "permission_denied", "not_found", "unavailable", ...).
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

let unauthenticated = () => {};

// onUnauthenticated sets what happens when a call finds the session gone:
// the dashboard shows its sign-in form.
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

// call makes a unary call of the HubService method with the request
// message and returns the response message. It throws an ApiError.
export async function call(method, request = {}) {
  const response = await send(service + method, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1" },
    body: JSON.stringify(request),
  });
  if (!response.ok) throw refused(await errorOf(response));
  return response.json();
}

// signIn trades an API token for a session cookie. It throws an ApiError
// with the hub's reason when the token is refused (wrong, or too many
// wrong tries).
export async function signIn(token) {
  const response = await send("/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (!response.ok) throw await errorOf(response);
}

// signOut ends the session.
export async function signOut() {
  const response = await send("/api/session", { method: "DELETE" });
  if (!response.ok) throw await errorOf(response);
}

// The flags of a Connect stream envelope.
const compressedFlag = 0x01;
const endStreamFlag = 0x02;

// watchFleet runs a WatchFleet stream, calling onMessage with each
// WatchFleetResponse in order, until the hub ends it (it returns), it
// fails (it throws an ApiError) or signal aborts it (an AbortError).
// onBytes, when given, is called as each piece of the body arrives: a
// snapshot of a large fleet takes long to arrive on a slow link, and is
// not silence.
export async function watchFleet(onMessage, signal, onBytes = () => {}) {
  const response = await send(service + "WatchFleet", {
    method: "POST",
    signal,
    headers: { "Content-Type": "application/connect+json", "Connect-Protocol-Version": "1" },
    body: envelope({}),
  });
  if (!response.ok) throw refused(await errorOf(response));
  const envelopes = new EnvelopeReader(response.body.getReader(), onBytes);
  const decoder = new TextDecoder();
  for (;;) {
    const next = await envelopes.next();
    if (next === null) throw new ApiError("unavailable", "the hub cut the stream off");
    if (next.flags & compressedFlag) throw new ApiError("internal", "the hub sent a compressed message, which the dashboard did not ask for");
    const message = JSON.parse(decoder.decode(next.data));
    if (next.flags & endStreamFlag) {
      if (message.error) throw refused(new ApiError(message.error.code ?? "unknown", message.error.message ?? ""));
      return;
    }
    onMessage(message);
  }
}

// envelope is a Connect stream envelope of message: a flags byte, the
// length as 4 bytes big-endian, then the JSON.
function envelope(message) {
  const data = new TextEncoder().encode(JSON.stringify(message));
  const out = new Uint8Array(5 + data.length);
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

// EnvelopeReader cuts a stream's body into envelopes, however the network
// split it into chunks. It keeps the chunks and copies each envelope
// once, so a snapshot of many megabytes is not re-copied per chunk.
class EnvelopeReader {
  constructor(reader, onBytes) {
    this.reader = reader;
    this.onBytes = onBytes;
    this.chunks = [];
    this.buffered = 0;
  }

  // next is the next envelope as {flags, data}, or null when the body
  // ended between envelopes. It throws an ApiError when the body ended
  // inside one, or the connection failed.
  async next() {
    if (!(await this.fill(5))) {
      if (this.buffered === 0) return null;
      throw new ApiError("unavailable", "the stream was cut off inside a message");
    }
    const header = this.take(5);
    const length = new DataView(header.buffer, header.byteOffset, 5).getUint32(1);
    if (!(await this.fill(length))) throw new ApiError("unavailable", "the stream was cut off inside a message");
    return { flags: header[0], data: this.take(length) };
  }

  // fill reads until n bytes are buffered, and reports whether they are.
  async fill(n) {
    while (this.buffered < n) {
      let chunk;
      try {
        chunk = await this.reader.read();
      } catch (err) {
        if (err.name === "AbortError") throw err;
        throw new ApiError("unavailable", `the stream failed (${err.message})`);
      }
      if (chunk.done) return false;
      this.onBytes();
      this.chunks.push(chunk.value);
      this.buffered += chunk.value.length;
    }
    return true;
  }

  // take removes the first n buffered bytes and returns them.
  take(n) {
    const first = this.chunks[0];
    this.buffered -= n;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n;) {
      const chunk = this.chunks[0];
      const count = Math.min(chunk.length, n - filled);
      out.set(chunk.subarray(0, count), filled);
      filled += count;
      if (count === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(count);
    }
    return out;
  }
}

async function send(url, init) {
  try {
    return await fetch(url, { credentials: "same-origin", cache: "no-store", ...init });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("unavailable", `cannot reach the hub (${err.message})`);
  }
}

// errorOf is the ApiError a non-2xx answer carries: Connect's JSON
// {code, message}, the session endpoints' {message}, or, from a proxy,
// neither.
async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON: the HTTP status says what happened.
  }
  return new ApiError(body.code ?? statusCodes[response.status] ?? "unknown",
    body.message || `the hub answered ${response.status} ${response.statusText}`.trim());
}

// statusCodes are the Connect codes of HTTP statuses, for answers without
// a Connect error body.
const statusCodes = {
  400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
  408: "deadline_exceeded", 429: "resource_exhausted", 502: "unavailable", 503: "unavailable", 504: "unavailable",
};

// refused hands err on, after showing the sign-in form when the session
// is gone.
function refused(err) {
  if (err.code === "unauthenticated") unauthenticated(err);
  return err;
}
