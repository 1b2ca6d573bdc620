// Live events page: subscribes to /v1/realtime with the token the user
// enters and polls the webhook endpoints' delivery state.
"use strict";

const maxRows = 200; // older event rows are removed beyond this count
const webhookRefreshMs = 5000;
const tokenKey = "civicbase.token"; // sessionStorage key; the token never goes into the URL

// Close codes after which the page reconnects by itself. 4008 (too slow) and
// 4009 (server restarting) ask for it; 1001 and 1006 are a lost connection.
// The others (4001 bad token, 4010 too many subscriptions, 4011 not
// authenticated in time, 1009 frame too large) need the user to act.
const reconnectCodes = new Set([1001, 1006, 4008, 4009]);

const closeReasons = {
  1000: "closed normally",
  1001: "server going away",
  1006: "connection lost",
  1009: "a message was larger than 64 KiB",
  4001: "the token is invalid or expired",
  4008: "the page fell behind the event stream",
  4009: "the server is restarting",
  4010: "more than 20 subscriptions",
  4011: "not authenticated within 10 s",
};

const el = (id) => document.getElementById(id);

let socket = null;
let lastEventId = "";
let eventCount = 0;
let reconnectTimer = null;
let webhookTimer = null;
let shouldReconnect = false; // true between Connect and Disconnect

function setStatus(text) {
  el("status").textContent = text;
}

function showError(text) {
  const box = el("error");
  box.textContent = text;
  box.hidden = !text;
}

function currentModels() {
  return el("models").value.split(",").map((m) => m.trim()).filter((m) => m !== "");
}

function connect() {
  const token = el("token").value.trim();
  const models = currentModels();
  if (!token || models.length === 0) {
    showError("Enter the token and at least one model name.");
    return;
  }
  sessionStorage.setItem(tokenKey, token);
  clearTimeout(reconnectTimer);
  if (socket) {
    socket.onclose = null;
    socket.close(1000);
  }
  shouldReconnect = true;
  el("connect").disabled = true;
  el("disconnect").disabled = false;
  showError("");
  openSocket(token, models);
  startWebhookPolling(token);
}

function disconnect() {
  shouldReconnect = false;
  clearTimeout(reconnectTimer);
  clearInterval(webhookTimer);
  if (socket) {
    socket.close(1000);
  }
  el("connect").disabled = false;
  el("disconnect").disabled = true;
  setStatus("Disconnected.");
}

function openSocket(token, models) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  setStatus("Connecting…");
  const ws = new WebSocket(scheme + "//" + location.host + "/v1/realtime");
  socket = ws;

  ws.onopen = () => {
    setStatus("Connected, authenticating…");
    ws.send(JSON.stringify({ type: "authenticate", token: token }));
  };

  ws.onmessage = (message) => {
    let msg;
    try {
      msg = JSON.parse(message.data);
    } catch (err) {
      showError("Received a message that is not JSON: " + err.message);
      return;
    }
    handleMessage(ws, msg, models);
  };

  ws.onclose = (event) => {
    if (socket !== ws) {
      return;
    }
    socket = null;
    const reason = closeReasons[event.code] || "unknown close code";
    let text = "Closed with code " + event.code + " (" + reason + ")";
    if (event.code === 4008) {
      // The reason of 4008 is {"lastId":"evt_…"}, the last event sent.
      try {
        lastEventId = JSON.parse(event.reason).lastId || lastEventId;
      } catch (err) {
        // Keep the last id the page saw.
      }
    } else if (event.reason) {
      text += ": " + event.reason;
    }
    if (shouldReconnect && reconnectCodes.has(event.code)) {
      // Jitter spreads the reconnects of many pages after a server restart.
      const delay = 1000 + Math.floor(Math.random() * 4000);
      setStatus(text + ". Reconnecting in " + Math.round(delay / 1000) + " s…");
      reconnectTimer = setTimeout(() => openSocket(token, models), delay);
      return;
    }
    setStatus(text + ".");
    if (event.code !== 1000) {
      showError(text + ".");
    }
    el("connect").disabled = false;
    el("disconnect").disabled = true;
    shouldReconnect = false;
    clearInterval(webhookTimer);
  };
}

function handleMessage(ws, msg, models) {
  switch (msg.type) {
    case "authenticated": {
      setStatus("Authenticated, subscribing…");
      const subscribe = { type: "subscribe", id: "live", models: models };
      if (lastEventId) {
        subscribe.since = lastEventId; // replay what was missed while away
      }
      ws.send(JSON.stringify(subscribe));
      break;
    }
    case "subscribed":
      setStatus("Subscribed to " + msg.models.join(", ") + ". Waiting for events…");
      break;
    case "create":
    case "update":
    case "delete":
    case "truncate":
    case "event":
      addEvent(msg);
      break;
    case "error":
      showError("Error " + msg.code + ": " + msg.message);
      break;
    case "resync_required":
      // Events before this point may be missing, so the list is incomplete.
      // A reconnect resumes after resumeFrom, where the stream is complete.
      lastEventId = msg.resumeFrom;
      showError("Events may be missing (" + msg.reason + "): " + msg.message);
      break;
    case "pong":
    case "refreshed":
      break;
    default:
      showError("Received an unknown message type: " + msg.type);
  }
}

function addEvent(msg) {
  if (msg.id) {
    lastEventId = msg.id;
  }
  eventCount++;
  el("event-count").textContent = "(" + eventCount + " received)";

  const row = document.createElement("tr");
  row.className = "new";
  const time = msg.timestamp ? new Date(msg.timestamp * 1000).toLocaleTimeString() : "";
  const type = msg.type === "event" ? msg.event : msg.type;
  const changes = msg.changes === undefined ? "" : JSON.stringify(msg.changes, null, 1);
  for (const [text, className] of [
    [time, ""],
    [type, ""],
    [msg.model || "", ""],
    [msg.instanceId === undefined ? "" : String(msg.instanceId), "instance"],
    [msg.id || "", ""],
    [changes, "changes"],
  ]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (className) {
      cell.className = className;
    }
    row.appendChild(cell);
  }
  const body = el("events");
  body.insertBefore(row, body.firstChild);
  setTimeout(() => row.classList.remove("new"), 2000);
  while (body.rows.length > maxRows) {
    body.deleteRow(body.rows.length - 1);
  }
}

// getJSON sends a GET with the bearer token and returns the decoded body. It
// throws an Error with the API's error message on a status other than 200.
async function getJSON(path, token) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    // Handled below with the status code.
  }
  if (!response.ok) {
    const detail = body && body.error ? body.error.message : response.statusText;
    throw new Error(path + " returned " + response.status + ": " + detail);
  }
  return body;
}

function startWebhookPolling(token) {
  clearInterval(webhookTimer);
  refreshWebhooks(token);
  webhookTimer = setInterval(() => refreshWebhooks(token), webhookRefreshMs);
}

async function countDeliveries(id, status, token) {
  const page = await getJSON("/webhooks/" + encodeURIComponent(id) + "/deliveries?status=" + status + "&limit=100", token);
  return page.deliveries.length + (page.hasMore ? "+" : "");
}

async function refreshWebhooks(token) {
  const statusLine = el("webhooks-status");
  try {
    const page = await getJSON("/webhooks?limit=100", token);
    const rows = await Promise.all(page.webhooks.map(async (hook) => {
      const [pending, dead] = await Promise.all([
        countDeliveries(hook.id, "pending", token),
        countDeliveries(hook.id, "dead", token),
      ]);
      return { hook, pending, dead };
    }));
    const body = el("webhooks");
    body.replaceChildren();
    for (const { hook, pending, dead } of rows) {
      const row = document.createElement("tr");
      const state = hook.active ? "active" : "inactive" + (hook.disabledReason ? ": " + hook.disabledReason : "");
      for (const text of [hook.id, hook.url, state, pending, dead]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      if (!hook.active) {
        row.cells[2].className = "inactive";
      }
      body.appendChild(row);
    }
    const more = page.hasMore ? " (first 100 shown)" : "";
    statusLine.textContent = rows.length + " endpoint(s)" + more + ", updated " + new Date().toLocaleTimeString() + ".";
  } catch (err) {
    statusLine.textContent = "Loading the webhook endpoints failed: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  el("token").value = sessionStorage.getItem(tokenKey) || "";
  el("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    connect();
  });
  el("disconnect").addEventListener("click", disconnect);
});
