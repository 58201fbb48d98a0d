/* The chat page: one WebSocket (ws/chat/) for answers, the REST API for lists. Protocol: docs/chat.md. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const S = config.strings;
  const $ = (selector, root = document) => root.querySelector(selector);
  const ui = {
    chat: $("[data-testid=chat]"),
    listToggle: $("[data-testid=conversations-toggle]"),
    list: $("[data-testid=conversations]"),
    search: $("[data-testid=chat-search]"),
    newChat: $("[data-testid=new-chat]"),
    model: $("[data-testid=model-picker]"),
    task: $("[data-testid=task-picker]"),
    system: $("[data-testid=system-prompt]"),
    temperature: $("[data-testid=temperature]"),
    maxTokens: $("[data-testid=max-tokens]"),
    maxTokensHint: $("[data-testid=max-tokens-hint]"),
    connection: $("[data-testid=connection]"),
    notice: $("[data-testid=chat-error]"),
    messages: $("[data-testid=messages]"),
    form: $("[data-testid=composer-form]"),
    composer: $("[data-testid=composer]"),
    send: $("[data-testid=send]"),
    stop: $("[data-testid=stop]"),
  };
  const state = {
    conversationId: Number(new URLSearchParams(location.search).get("c")) || null,
    conversationModel: "",
    messages: [],
    models: [],
    quota: null,
    socket: null,
    retry: 0,
    refs: 0,
    pendingRef: null,
    draft: "",
    dirty: new Set(),
    frame: 0,
    reasoningOpen: new Map(),
    heardAt: Date.now(),
  };

  const fmt = window.ChatRender.fmt;
  const find = (id) => state.messages.find((m) => m.id === id);
  const streamingMessage = () => state.messages.find((m) => m.role === "assistant" && m.status === "streaming");

  // --- REST ---------------------------------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(path, options = {}) {
    const response = await fetch(`/api/v1/${path}`, {
      credentials: "same-origin",
      ...options,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), ...(options.headers || {}) },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : response.statusText);
    }
    return response.status === 204 ? null : response.json();
  }

  // --- socket -------------------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    state.socket = socket;
    ui.connection.textContent = state.retry ? S.reconnecting : S.connecting;
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (event.code === 4401) {
        location.href = `/login/?next=${encodeURIComponent(location.pathname + location.search)}`;
        return;
      }
      ui.connection.textContent = S.reconnecting;
      state.retry += 1;
      setTimeout(connect, Math.min(10000, 300 * 2 ** Math.min(state.retry, 6)));
    };
  }

  function request(message) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showNotice(S.reconnecting);
      return null;
    }
    state.refs += 1;
    const ref = `r${state.refs}`;
    state.socket.send(JSON.stringify({ ...message, ref }));
    return ref;
  }

  const handlers = {
    ready() {
      state.retry = 0;
      ui.connection.textContent = S.connected;
      request({ type: "subscribe", conversation_id: state.conversationId }); // also re-syncs after a reconnect
    },
    conversation(event) {
      if ((event.conversation ? event.conversation.id : null) !== state.conversationId) return;
      state.messages = event.messages;
      if (event.quota) state.quota = event.quota;
      applySettings(event.conversation);
      renderAll(true);
    },
    started(event) {
      if (event.ref && event.ref === state.pendingRef) {
        state.pendingRef = null;
        state.draft = "";
        openConversation(event.conversation.id, false);
      }
      if (event.conversation.id === state.conversationId) {
        state.messages = state.messages.filter((m) => !event.superseded.includes(m.id));
        event.messages.forEach((m) => find(m.id) || state.messages.push(m));
        renderAll(true);
      }
      refreshList();
    },
    delta(event) {
      const message = event.conversation_id === state.conversationId && find(event.message_id);
      if (!message || message.status !== "streaming" || (message.seq || 0) >= event.seq) return;
      if (event.after !== undefined && event.after > (message.seq || 0)) {
        // It follows text this tab never received (an event lost on the way): re-read the answer.
        request({ type: "subscribe", conversation_id: state.conversationId });
        return;
      }
      message.seq = event.seq;
      if (event.replace) {
        message.reasoning = event.reasoning;
        message.content = event.content;
      } else {
        message.reasoning += event.reasoning;
        message.content += event.content;
      }
      noteThinking(message);
      schedule(message.id);
    },
    status(event) {
      // The answer waits for its on-demand model to start: show how long, until the first words arrive.
      const message = event.conversation_id === state.conversationId && find(event.message_id);
      if (!message || message.status !== "streaming") return;
      message.starting = event.elapsed;
      schedule(message.id);
    },
    done(event) {
      if (event.quota) state.quota = event.quota;
      if (event.conversation_id === state.conversationId && event.message.content !== undefined) {
        const index = state.messages.findIndex((m) => m.id === event.message.id);
        if (index >= 0) state.messages[index] = event.message;
        renderAll(false);
      }
      refreshList();
    },
    conversation_changed(event) {
      if (event.deleted && event.deleted === state.conversationId) newConversation();
      refreshList();
    },
    error(event) {
      if (event.ref && event.ref === state.pendingRef) {
        state.pendingRef = null;
        if (!ui.composer.value) ui.composer.value = state.draft;
      }
      showNotice(config.errors[event.code] || event.message);
    },
    pong() {},
  };

  function handle(event) {
    const handler = handlers[event.type];
    if (handler) handler(event);
    state.heardAt = Date.now();
  }

  // An answer that has gone quiet is re-read from the server: the snapshot is exact (deltas it
  // already covers are dropped by their seq), so a lost event costs a moment, never the text.
  setInterval(() => {
    if (streamingMessage() && Date.now() - state.heardAt > 8000) {
      state.heardAt = Date.now();
      request({ type: "subscribe", conversation_id: state.conversationId });
    }
  }, 2000);

  // --- conversations ------------------------------------------------------------------------------

  function openConversation(id, subscribe = true) {
    state.conversationId = id;
    const url = new URL(location.href);
    if (id) url.searchParams.set("c", id);
    else url.searchParams.delete("c");
    history.replaceState(null, "", url);
    markCurrent();
    if (subscribe) {
      state.messages = [];
      renderAll(true);
      request({ type: "subscribe", conversation_id: id });
    }
  }

  function newConversation() {
    openConversation(null);
    ui.system.value = "";
    ui.temperature.value = "";
    ui.maxTokens.value = "";
    ui.composer.focus();
  }

  let listTimer = 0;
  function refreshList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(loadList, 150);
  }

  async function loadList() {
    const text = ui.search.value.trim();
    const query = text ? `&q=${encodeURIComponent(text)}` : "";
    const data = await api(`conversations/?page_size=100${query}`).catch(() => null);
    if (!data) return;
    ui.list.replaceChildren(...data.results.map(listItem));
    markCurrent();
  }

  function listItem(conversation) {
    const item = document.createElement("li");
    item.dataset.id = conversation.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = conversation.title || S.untitled;
    title.title = title.textContent;
    item.append(title, iconButton("✎", S.rename, () => rename(conversation)), iconButton("✕", S.delete, () => remove(conversation)));
    item.addEventListener("click", () => {
      closeList();
      if (conversation.id !== state.conversationId) openConversation(conversation.id);
    });
    return item;
  }

  function iconButton(text, label, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.title = label;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      action();
    });
    return button;
  }

  // On a phone the conversation list is a drawer opened from the toolbar.
  function closeList() {
    ui.chat.classList.remove("list-open");
    ui.listToggle.setAttribute("aria-expanded", "false");
  }

  function markCurrent() {
    ui.list.querySelectorAll("li").forEach((li) => li.toggleAttribute("aria-current", Number(li.dataset.id) === state.conversationId));
  }

  async function rename(conversation) {
    const title = await window.AppDialog.ask(S.renamePrompt, conversation.title, { okLabel: S.rename });
    if (title === null) return;
    await api(`conversations/${conversation.id}/`, { method: "PATCH", body: JSON.stringify({ title: title.trim() }) }).catch((e) => showNotice(e.message));
    refreshList();
  }

  async function remove(conversation) {
    const named = fmt(S.deleteNamed, { title: conversation.title || S.untitled });
    if (!(await window.AppDialog.confirm(named, { okLabel: S.delete, danger: true }))) return;
    await api(`conversations/${conversation.id}/`, { method: "DELETE" }).catch((e) => showNotice(e.message));
    if (conversation.id === state.conversationId) newConversation();
    refreshList();
  }

  // --- models and settings ------------------------------------------------------------------------

  async function loadModels() {
    const data = await api("chat/models/").catch(() => ({ results: [] }));
    state.models = data.results;
    ui.model.replaceChildren();
    for (const model of state.models) {
      const option = new Option(model.status === "ok" ? model.name : `${model.name}（${S[model.status]}）`, model.name);
      option.disabled = model.status === "down";
      ui.model.append(option);
    }
    if (!state.models.length) ui.model.append(new Option(S.noModels, ""));
    const usable = state.models.filter((m) => m.status !== "down").map((m) => m.name);
    ui.model.value = usable.includes(state.conversationModel) ? state.conversationModel : usable[0] || "";
    updateDefaults();
  }

  function currentModel() {
    return state.models.find((m) => m.name === ui.model.value);
  }

  function updateDefaults() {
    const model = currentModel();
    const defaults = model ? model.chat_defaults : config.defaultTemperatures;
    const temperature = defaults[ui.task.value];
    ui.temperature.placeholder = fmt(S.defaultTemperature, { value: temperature == null ? "" : Number(temperature).toFixed(1) });
    ui.maxTokens.placeholder = model ? fmt(S.defaultMaxTokens, { value: model.default_max_tokens }) : "";
    ui.maxTokensHint.textContent = model ? fmt(S.maxTokensHint, { value: model.default_max_tokens }) : "";
  }

  function applySettings(conversation) {
    if (!conversation) return;
    state.conversationModel = conversation.model;
    if ([...ui.model.options].some((o) => o.value === conversation.model && !o.disabled)) ui.model.value = conversation.model;
    ui.task.value = conversation.task;
    ui.system.value = conversation.system_prompt;
    ui.temperature.value = conversation.temperature ?? "";
    ui.maxTokens.value = conversation.max_tokens ?? "";
    updateDefaults();
  }

  function settings() {
    const number = (input) => (input.value === "" ? null : Number(input.value));
    return {
      model: ui.model.value,
      task: ui.task.value,
      system_prompt: ui.system.value,
      temperature: number(ui.temperature),
      max_tokens: number(ui.maxTokens),
    };
  }

  // --- sending ------------------------------------------------------------------------------------

  function submit() {
    const content = ui.composer.value.trim();
    if (!content || streamingMessage() || state.pendingRef) return;
    if (!ui.model.value) return showNotice(S.noModels);
    hideNotice();
    const ref = request({ type: "send", conversation_id: state.conversationId, content, ...settings() });
    if (!ref) return;
    state.pendingRef = ref;
    state.draft = content;
    ui.composer.value = "";
  }

  function act(message) {
    hideNotice();
    const ref = request(message);
    if (ref) state.pendingRef = ref;
  }

  // --- rendering ----------------------------------------------------------------------------------

  function noteThinking(message) {
    const now = Date.now();
    if (message.reasoning && !message._thinkingSince) message._thinkingSince = now;
    if (message.reasoning && message.content && message._thinkingSince && !message.reasoning_ms) {
      message.reasoning_ms = now - message._thinkingSince;
    }
  }

  function schedule(id) {
    state.dirty.add(id);
    if (!state.frame) state.frame = requestAnimationFrame(flushFrame);
  }

  function flushFrame() {
    state.frame = 0;
    const stick = nearBottom();
    for (const id of state.dirty) {
      const element = ui.messages.querySelector(`[data-id="${id}"]`);
      const message = find(id);
      if (element && message) fill(element, message);
    }
    state.dirty.clear();
    if (stick) scrollToBottom();
  }

  function nearBottom() {
    return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function renderAll(jump) {
    const stick = jump || nearBottom();
    ui.messages.replaceChildren(...state.messages.map(build));
    if (stick) scrollToBottom();
    const busy = Boolean(streamingMessage());
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
  }

  const { build, fill } = window.ChatRender.create({
    config,
    state,
    busy: () => Boolean(streamingMessage()),
    edit: (message, content) => act({ type: "edit", message_id: message.id, content, ...settings() }),
    regenerate: (message) => act({ type: "regenerate", message_id: message.id, ...settings() }),
  });

  // --- wiring -------------------------------------------------------------------------------------

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  ui.composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  ui.stop.addEventListener("click", () => {
    const message = streamingMessage();
    if (message) request({ type: "stop", message_id: message.id });
  });
  ui.newChat.addEventListener("click", () => {
    closeList();
    newConversation();
  });
  ui.listToggle.addEventListener("click", () => {
    const open = ui.chat.classList.toggle("list-open");
    ui.listToggle.setAttribute("aria-expanded", String(open));
    if (open) loadList();
  });
  ui.model.addEventListener("change", updateDefaults);
  ui.task.addEventListener("change", updateDefaults);
  let searchTimer = 0;
  ui.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadList, 250);
  });

  loadModels();
  loadList();
  connect();
})();
