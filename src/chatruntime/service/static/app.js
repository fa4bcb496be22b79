// The chat page: sign in with an API key, list and create sessions, chat with the reply
// streaming in as server-sent events, and save checkpoints to restore or fork from. Plain
// browser JavaScript, no build step. Everything shown is set as text, never as HTML.
"use strict";

const KEY_STORAGE = "chatruntime.key";
const PAGE_SIZE = 50;
const HISTORY_SIZE = 200;
const state = { key: null, sessionId: null, cursor: null, names: new Map(), busy: 0 };
const $ = (id) => document.getElementById(id);

class ApiFailure extends Error {
  constructor(status, info) {
    super(info && info.message ? info.message : `HTTP ${status}`);
    this.status = status;
    this.code = info && info.code ? info.code : `HTTP_${status}`;
  }
}

function headers(json) {
  const result = { Authorization: `Bearer ${state.key}` };
  if (json) result["Content-Type"] = "application/json";
  return result;
}

async function failure(response) {
  let info = null;
  try {
    info = await response.json();
  } catch (_) {
    // An answer without a body (401, 403) says nothing more than its status.
  }
  return new ApiFailure(response.status, info);
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (response.status === 401) {
    signOut("That key is not known here.");
    throw new ApiFailure(401, null);
  }
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

function describe(error) {
  return error instanceof ApiFailure ? `${error.code}: ${error.message}` : String(error);
}

// -- progress ----------------------------------------------------------------------------

// While an operation waits on the service, a spinner says what it waits for, and the
// buttons that would start another one are disabled (a turn and a restore of one session
// would only queue behind each other anyway).
function lock(locked) {
  for (const button of document.querySelectorAll("button.locks")) button.disabled = locked;
}

async function withProgress(text, work) {
  state.busy += 1;
  $("progress-text").textContent = text;
  $("progress").hidden = false;
  lock(true);
  try {
    return await work();
  } finally {
    state.busy -= 1;
    if (state.busy === 0) {
      $("progress").hidden = true;
      lock(false);
    }
  }
}

// -- signing in and out -----------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  const me = await api("GET", "/me");
  sessionStorage.setItem(KEY_STORAGE, key);
  $("user").textContent = me.userId;
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadSessions(true);
  const wanted = location.hash.slice(1);
  if (wanted) await openSession(wanted);
}

function signOut(reason) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.sessionId = null;
  $("checkpoints").replaceChildren();
  $("checkpoint-form").hidden = true;
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = reason || "";
  $("key").value = "";
}

// -- sessions ----------------------------------------------------------------------------

function sessionItem(session) {
  const item = document.createElement("li");
  item.dataset.id = session.id;
  item.append(session.name);
  const details = document.createElement("small");
  details.textContent = `${session.context.totalMessages} messages · ${session.status}`;
  item.append(details);
  item.classList.toggle("current", session.id === state.sessionId);
  item.addEventListener("click", () => openSession(session.id).catch(showError));
  state.names.set(session.id, session.name);
  return item;
}

async function loadSessions(reset) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (!reset && state.cursor) params.set("cursor", state.cursor);
  const page = await api("GET", `/sessions?${params}`);
  if (reset) $("sessions").replaceChildren();
  for (const session of page.sessions) $("sessions").append(sessionItem(session));
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
}

async function createSession(name) {
  const session = await api("POST", "/sessions", { name });
  $("sessions").prepend(sessionItem(session));
  await openSession(session.id);
}

async function openSession(id) {
  state.sessionId = id;
  if (location.hash.slice(1) !== id) history.replaceState(null, "", `#${id}`);
  for (const item of $("sessions").children) {
    item.classList.toggle("current", item.dataset.id === id);
  }
  const items = await api("GET", `/sessions/${id}/messages?limit=${HISTORY_SIZE}`);
  if (!state.names.has(id)) state.names.set(id, (await api("GET", `/sessions/${id}`)).name);
  $("title").textContent = state.names.get(id);
  $("messages").replaceChildren();
  for (const item of items) showItem(item);
  $("composer").hidden = false;
  $("checkpoint-form").hidden = false;
  $("chat-error").textContent = "";
  $("content").focus();
  await loadCheckpoints(id);
}

// -- checkpoints -------------------------------------------------------------------------

function actionButton(text, kind, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `${kind} locks`;
  button.textContent = text;
  button.disabled = state.busy > 0;
  button.addEventListener("click", action);
  return button;
}

function checkpointItem(checkpoint) {
  const item = document.createElement("li");
  item.dataset.id = checkpoint.id;
  item.dataset.kind = checkpoint.kind;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = checkpoint.label || "Checkpoint";
  const details = document.createElement("small");
  const when = new Date(checkpoint.createdAt).toLocaleTimeString();
  const undo = checkpoint.kind === "restore" ? " · undo point" : "";
  details.textContent = `${checkpoint.header.context.totalMessages} messages · ${when}${undo}`;
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(
    actionButton("Restore", "restore", () =>
      withProgress("Restoring the checkpoint…", () => restoreCheckpoint(checkpoint)).catch(
        showError,
      ),
    ),
    actionButton("Fork", "fork", () =>
      withProgress("Forking a new session…", () => forkFrom(checkpoint)).catch(showError),
    ),
  );
  item.append(label, details, actions);
  return item;
}

async function loadCheckpoints(id) {
  const checkpoints = await api("GET", `/sessions/${id}/checkpoints`);
  if (state.sessionId !== id) return; // another session was opened meanwhile
  $("checkpoints").replaceChildren(...checkpoints.map(checkpointItem));
  $("no-checkpoints").textContent = checkpoints.length
    ? ""
    : "None yet: save one to come back to this point later.";
}

async function saveCheckpoint(label) {
  const id = state.sessionId;
  await api("POST", `/sessions/${id}/checkpoints`, {
    label: label || `Checkpoint at ${new Date().toLocaleTimeString()}`,
  });
  await loadCheckpoints(id);
}

// The session is rewound in place; the service keeps how it was as an undo point, which
// the reloaded list shows first.
async function restoreCheckpoint(checkpoint) {
  const id = state.sessionId;
  const header = await api("POST", `/sessions/${id}/checkpoints/${checkpoint.id}/restore`);
  state.names.set(id, header.name);
  await openSession(id);
  await loadSessions(true);
}

async function forkFrom(checkpoint) {
  const fork = await api("POST", `/sessions/${state.sessionId}/fork`, {
    checkpointId: checkpoint.id,
  });
  state.names.set(fork.id, fork.name);
  await loadSessions(true);
  await openSession(fork.id);
}

// -- messages ----------------------------------------------------------------------------

function line(kind, text, before) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  $("messages").insertBefore(item, before || null);
  item.scrollIntoView({ block: "end" });
  return item;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part.text || part.refusal || "").join("");
  if (content && content.type === "error") return `error: ${content.error}`;
  return content && content.text ? content.text : "";
}

function showItem(item) {
  if (item.type === "message" && (item.role === "user" || item.role === "assistant")) {
    line(item.role, textOf(item.content));
  } else if (item.type === "function_call") {
    line("note", `→ ${item.name}(${item.arguments})`);
  } else if (item.type === "function_call_result") {
    line("note", `← ${textOf(item.output)}`);
  } else if (item.type === "handoff") {
    line("note", "⇄ handed over to another agent");
  }
}

function showEvent(event, reply) {
  switch (event.type) {
    case "text_delta":
      reply.textContent += event.text;
      break;
    case "tool_call":
      line("note", `→ ${event.name}(${event.arguments})`, reply);
      break;
    case "tool_result":
      line("note", `← ${event.output}`, reply);
      break;
    case "handoff":
      line("note", "⇄ handed over to another agent", reply);
      break;
    case "agent_changed":
      line("note", `${event.name} answers now`, reply);
      break;
    case "done":
      reply.textContent = event.message.content;
      reply.dataset.state = "done";
      break;
    case "error":
      reply.classList.add("failed");
      reply.textContent = `${event.error.code}: ${event.error.message}`;
      reply.dataset.state = "failed";
      break;
  }
}

function parseEvent(block) {
  const data = block
    .split("\n")
    .filter((row) => row.startsWith("data: "))
    .map((row) => row.slice(6))
    .join("\n");
  return data ? JSON.parse(data) : null;
}

async function send(content) {
  const sessionId = state.sessionId;
  line("user", content);
  const reply = line("assistant", "");
  reply.dataset.state = "streaming";
  const response = await fetch(`/sessions/${sessionId}/messages:stream`, {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify({ content }),
  });
  if (!response.ok) {
    const error = await failure(response);
    reply.classList.add("failed");
    reply.dataset.state = "failed";
    reply.textContent = describe(error);
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) showEvent(event, reply);
    }
  }
  if (reply.dataset.state === "streaming") {
    reply.classList.add("failed");
    reply.dataset.state = "failed";
    reply.textContent += " [the connection closed before the reply ended]";
  }
  await loadSessions(true);
}

function showError(error) {
  $("chat-error").textContent = describe(error);
}

// -- wiring ------------------------------------------------------------------------------

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  signIn($("key").value.trim()).catch((error) => {
    if (!(error instanceof ApiFailure && error.status === 401)) signOut(describe(error));
  });
});

$("signout").addEventListener("click", () => signOut(""));

$("new-session").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("new-name").value.trim();
  $("new-name").value = "";
  createSession(name).catch(showError);
});

$("more").addEventListener("click", () => loadSessions(false).catch(showError));

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = $("content").value;
  if (!content.trim() || state.busy > 0) return;
  $("content").value = "";
  $("chat-error").textContent = "";
  withProgress("Waiting for the reply…", () => send(content))
    .catch(showError)
    .finally(() => $("content").focus());
});

$("checkpoint-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const label = $("checkpoint-label").value.trim();
  $("checkpoint-label").value = "";
  $("chat-error").textContent = "";
  withProgress("Saving a checkpoint…", () => saveCheckpoint(label)).catch(showError);
});

$("content").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

const remembered = sessionStorage.getItem(KEY_STORAGE);
if (remembered) signIn(remembered).catch((error) => signOut(describe(error)));
