/* Drawing chat messages: the question, the folded reasoning, the Markdown answer, its figures. */
(function () {
  "use strict";

  const fmt = (template, values) => template.replace(/%\((\w+)\)s/g, (_m, key) => String(values[key] ?? ""));

  /* ctx: {config, state, busy(), edit(message, content), regenerate(message)} */
  function create(ctx) {
    const S = ctx.config.strings;
    const state = ctx.state;

    function build(message) {
      const element = document.createElement("div");
      element.className = `chat-msg ${message.role}`;
      element.dataset.id = message.id;
      element.dataset.testid = `${message.role}-message`;
      fill(element, message);
      return element;
    }

    function fill(element, message) {
      element.dataset.status = message.status;
      element.classList.toggle("streaming", message.status === "streaming");
      element.replaceChildren(...(message.role === "user" ? userParts(message) : assistantParts(message)));
    }

    function userParts(message) {
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = message.content;
      const actions = document.createElement("div");
      actions.className = "actions";
      if (!ctx.busy()) actions.append(textButton(S.edit, () => startEdit(message), "edit"));
      return [bubble, actions];
    }

    function startEdit(message) {
      const element = document.querySelector(`.chat-msg[data-id="${message.id}"]`);
      const box = document.createElement("div");
      box.className = "edit";
      const area = document.createElement("textarea");
      area.value = message.content;
      area.rows = 3;
      const save = textButton(S.saveSend, () => ctx.edit(message, area.value), "save-edit");
      box.append(area, save, textButton(S.cancel, () => fill(element, message)));
      element.replaceChildren(box);
      area.focus();
    }

    function textButton(text, action, testid) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = text;
      if (testid) button.dataset.testid = testid;
      button.addEventListener("click", action);
      return button;
    }

    function assistantParts(message) {
      const parts = [];
      const streaming = message.status === "streaming";
      if (streaming && message.starting != null && !message.content && !message.reasoning) {
        parts.push(startingPart(message));
      }
      if (message.reasoning) parts.push(reasoningPart(message, streaming));
      const answer = document.createElement("div");
      answer.className = "answer";
      answer.dataset.testid = "answer";
      window.ChatMarkdown.render(answer, message.content);
      decorateCode(answer);
      parts.push(answer);
      if (ctx.config.aiLabel && message.content) parts.push(aiLabelPart());
      if (["failed", "stopped", "interrupted"].includes(message.status)) parts.push(problemPart(message));
      if (!streaming) parts.push(statsPart(message), assistantActions(message));
      return parts;
    }

    function startingPart(message) {
      const line = document.createElement("p");
      line.className = "starting muted";
      line.dataset.testid = "model-starting";
      line.textContent = fmt(S.startingModel, { seconds: message.starting });
      return line;
    }

    function reasoningPart(message, streaming) {
      const details = document.createElement("details");
      details.className = "reasoning";
      details.dataset.testid = "reasoning";
      const thinking = streaming && !message.content;
      const initial = state.reasoningOpen.get(message.id) ?? thinking; // open while thinking, then folded
      details.open = initial;
      const summary = document.createElement("summary");
      const seconds = Math.max(1, Math.round((message.reasoning_ms || 0) / 1000));
      summary.textContent = thinking ? S.thinking : fmt(S.thought, { seconds });
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = message.reasoning;
      details.append(summary, text);
      // "toggle" also fires for the value set above; only the reader's own clicks are remembered.
      details.addEventListener("toggle", () => details.open !== initial && state.reasoningOpen.set(message.id, details.open));
      return details;
    }

    /* The visible mark the labelling rules ask for; copied answers carry it too (labelled()). */
    function aiLabelPart() {
      const mark = document.createElement("p");
      mark.className = "ai-label";
      mark.dataset.testid = "ai-label";
      mark.textContent = S.aiLabel;
      return mark;
    }

    function labelled(text) {
      return ctx.config.aiLabel ? `${text}\n\n[${S.aiLabel}]` : text;
    }

    function problemPart(message) {
      const line = document.createElement("p");
      line.className = `problem ${message.status}`;
      line.dataset.testid = "problem";
      if (message.status === "stopped") line.textContent = message.content || message.reasoning ? S.stopped : S.stoppedEmpty;
      else {
        const reason = ctx.config.errors[message.error_code] || message.error_code;
        line.textContent = fmt(S.failed, { reason });
        if (message.error_detail) line.title = message.error_detail;
      }
      return line;
    }

    function statsPart(message) {
      const line = document.createElement("div");
      line.className = "stats";
      line.dataset.testid = "stats";
      const bits = [];
      if (message.completion_tokens != null) {
        const usage = fmt(S.usage, { prompt: message.prompt_tokens ?? "?", completion: message.completion_tokens });
        bits.push(message.usage_estimated ? `${usage} ${S.estimated}` : usage);
      }
      if (message.ttft_ms != null) bits.push(fmt(S.ttft, { seconds: (message.ttft_ms / 1000).toFixed(2) }));
      if (message.tokens_per_second != null) bits.push(fmt(S.speed, { rate: message.tokens_per_second }));
      const last = [...state.messages].reverse().find((m) => m.role === "assistant");
      if (last && last.id === message.id) bits.push(...quotaBits());
      line.textContent = bits.join(" · ");
      return line;
    }

    function quotaBits() {
      const quota = state.quota;
      if (!quota || !quota.available) return [];
      const bits = [];
      if (quota.tokens_per_day) bits.push(fmt(S.quotaDay, { tokens: quota.tokens_per_day.remaining.toLocaleString() }));
      if (quota.tokens_per_month) bits.push(fmt(S.quotaMonth, { tokens: quota.tokens_per_month.remaining.toLocaleString() }));
      return bits.length ? bits : [S.quotaUnlimited];
    }

    function assistantActions(message) {
      const actions = document.createElement("div");
      actions.className = "actions";
      const copy = textButton(S.copy, async () => {
        await copyText(labelled(message.content));
        copy.textContent = S.copied;
        setTimeout(() => (copy.textContent = S.copy), 1500);
      });
      actions.append(copy);
      const current = state.messages.filter((m) => !m.superseded);
      if (current[current.length - 1] === message) {
        actions.append(textButton(S.regenerate, () => ctx.regenerate(message), "regenerate"));
      }
      return actions;
    }

    // Each code block gets a header: its language (as the Markdown fence or highlight.js names it) and Copy.
    function decorateCode(answer) {
      answer.querySelectorAll("pre > code").forEach((code) => {
        const pre = code.parentElement;
        const fence = [...code.classList].find((c) => c.startsWith("language-"));
        const bar = document.createElement("div");
        bar.className = "code-bar";
        const language = document.createElement("span");
        language.className = "code-language";
        language.dataset.testid = "code-language";
        language.textContent = fence ? fence.slice("language-".length) : S.codeLabel;
        const copy = textButton(S.copy, async () => {
          await copyText(code.textContent);
          copy.textContent = S.copied;
          setTimeout(() => (copy.textContent = S.copy), 1500);
        }, "copy-code");
        bar.append(language, copy);
        const box = document.createElement("div");
        box.className = "code-block";
        pre.replaceWith(box);
        box.append(bar, pre);
      });
    }

    async function copyText(text) {
      if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
      const area = Object.assign(document.createElement("textarea"), { value: text });
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }

    return { build, fill };
  }

  window.ChatRender = { create, fmt };
})();
