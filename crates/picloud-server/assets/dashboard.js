// PiCloud's dashboard: the little JavaScript its pages use. Every page works without it.
"use strict";

// htmx requests carry the session's CSRF token in X-CSRF-Token, as the admin API asks of
// requests signed in by cookie (forms also carry it in a hidden field, for no-JS browsers).
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

// The script editor: the source textarea becomes a CodeMirror 5 editor with Rhai highlighting,
// completions for the SDK (GET /api/v1/sdk) and the app's modules (Ctrl-Space, or after "::"),
// and the compile error of the last save marked at its line. Tab and Shift-Tab leave the editor,
// so the page stays keyboard reachable. Without CodeMirror (or JavaScript) the textarea remains.
const RHAI_KEYWORDS = [
  "let", "const", "fn", "if", "else", "switch", "while", "loop", "for", "in", "do", "until",
  "break", "continue", "return", "throw", "try", "catch", "import", "export", "as", "private",
  "this", "true", "false", "global",
];

function defineRhaiMode(CodeMirror) {
  CodeMirror.defineSimpleMode("rhai", {
    start: [
      { regex: /"(?:[^\\"]|\\.)*?(?:"|$)/, token: "string" },
      { regex: /`(?:[^\\`]|\\.)*?(?:`|$)/, token: "string" },
      { regex: /'(?:[^\\']|\\.)'/, token: "string" },
      { regex: /\/\/.*/, token: "comment" },
      { regex: /\/\*/, token: "comment", next: "comment" },
      { regex: new RegExp("(?:" + RHAI_KEYWORDS.join("|") + ")\\b"), token: "keyword" },
      { regex: /0x[0-9a-f_]+|0b[01_]+|0o[0-7_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:e[+-]?\d+)?/i, token: "number" },
      { regex: /[a-z_][\w]*(?=::)/i, token: "variable-2" },
      { regex: /[a-z_][\w]*(?=\s*\()/i, token: "def" },
      { regex: /[-+\/*=<>!&|^%?]+/, token: "operator" },
      { regex: /[{[(]/, indent: true },
      { regex: /[}\])]/, dedent: true },
      { regex: /[a-z_][\w]*/i, token: "variable" },
    ],
    comment: [
      { regex: /.*?\*\//, token: "comment", next: "start" },
      { regex: /.*/, token: "comment" },
    ],
    meta: { lineComment: "//", blockCommentStart: "/*", blockCommentEnd: "*/" },
  });
}

// What can follow the word at the cursor: `ns::` completes that namespace's functions (or a
// module's), anything else the namespaces, the modules and the keywords.
function rhaiHints(CodeMirror, sdk, modules) {
  return (cm) => {
    const cursor = cm.getCursor();
    const line = cm.getLine(cursor.line).slice(0, cursor.ch);
    const match = /([A-Za-z_]\w*::)?([A-Za-z_]\w*)?$/.exec(line);
    const prefix = match[2] || "";
    const from = CodeMirror.Pos(cursor.line, cursor.ch - prefix.length);
    let candidates;
    if (match[1]) {
      const namespace = match[1].slice(0, -2);
      candidates = ((sdk && sdk.namespaces[namespace]) || []).map((f) => ({
        text: f.name,
        displayText: f.name + "(" + f.arguments + ")" + (f.doc ? " — " + f.doc : ""),
      }));
    } else {
      const namespaces = sdk ? Object.keys(sdk.namespaces) : [];
      candidates = namespaces.map((n) => ({ text: n + "::", displayText: n + "::" }))
        .concat(modules.map((m) => ({ text: m, displayText: m + " (module)" })))
        .concat(RHAI_KEYWORDS.map((k) => ({ text: k, displayText: k })));
    }
    const seen = new Set();
    const list = candidates.filter((c) => c.text.startsWith(prefix) && !seen.has(c.text) && seen.add(c.text));
    return { list, from, to: cursor };
  };
}

function startEditor() {
  const textarea = document.getElementById("source");
  const CodeMirror = window.CodeMirror;
  if (!textarea || !CodeMirror || !CodeMirror.defineSimpleMode) {
    return;
  }
  defineRhaiMode(CodeMirror);
  const modules = JSON.parse(textarea.dataset.modules || "[]");
  let sdk = null;
  fetch(textarea.dataset.sdk, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((catalogue) => { sdk = catalogue; })
    .catch(() => {});
  const editor = CodeMirror.fromTextArea(textarea, {
    mode: "rhai",
    lineNumbers: true,
    indentUnit: 4,
    readOnly: textarea.readOnly,
    viewportMargin: Infinity,
    extraKeys: {
      "Ctrl-Space": "autocomplete",
      Tab: false,
      "Shift-Tab": false,
    },
    hintOptions: { hint: (cm) => rhaiHints(CodeMirror, sdk, modules)(cm), completeSingle: false },
  });
  editor.on("inputRead", (cm, change) => {
    const cursor = cm.getCursor();
    if (change.text.join("").endsWith(":") && /::$/.test(cm.getLine(cursor.line).slice(0, cursor.ch))) {
      cm.showHint({ completeSingle: false });
    }
  });
  const refusal = document.querySelector(".source-error[data-line]");
  if (refusal) {
    const line = Number(refusal.dataset.line) - 1;
    const column = Number(refusal.dataset.column || 1) - 1;
    editor.addLineClass(line, "background", "source-error-line");
    const note = document.createElement("div");
    note.className = "source-error-note";
    note.textContent = "▲ " + refusal.textContent;
    editor.addLineWidget(line, note);
    editor.setCursor({ line, ch: column });
    editor.scrollIntoView({ line, ch: column }, 80);
  }
}

// The live tail of an app's executions: "Follow live" reads the admin API's event stream and
// puts each new execution, with its log lines, on top (as text; at most 200 kept).
function startTail() {
  const tail = document.getElementById("tail");
  if (!tail || !window.EventSource) {
    return;
  }
  const button = tail.querySelector("button");
  const lines = tail.querySelector("ol");
  let source = null;
  const stop = () => {
    source.close();
    source = null;
    button.textContent = "Follow live";
  };
  tail.hidden = false;
  button.addEventListener("click", () => {
    if (source) {
      stop();
      return;
    }
    source = new EventSource(tail.dataset.stream);
    button.textContent = "Connecting…";
    // Open once the server has subscribed: nothing recorded from now on is missed.
    source.addEventListener("open", () => {
      button.textContent = "Stop following";
    });
    source.addEventListener("execution", (event) => {
      const record = JSON.parse(event.data);
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/admin/executions/" + record.execution_id;
      link.textContent = record.started_at.slice(11, 19) + " " + record.summary;
      item.append(link, " · " + record.outcome + (record.status ? " " + record.status : ""));
      for (const line of record.logs) {
        const row = document.createElement("div");
        row.textContent = line.level + " " + line.message;
        item.append(row);
      }
      lines.prepend(item);
      while (lines.children.length > 200) {
        lines.lastElementChild.remove();
      }
    });
    source.addEventListener("dropped", stop);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startEditor();
  startTail();
});
