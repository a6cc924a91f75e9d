// Token picker for "Select Subject Tokens": the prompt's tokens as chips with their context positions,
// refreshed as the prompt changes (debounced POST /aande/tokenize). Clicking a chip adds to `subjects` the item
// the route gives as that token's form: its word form ("cat", "cat#2", "porcupine[2]") when that form selects
// exactly this token, because a word follows the prompt when it is edited and an index does not; else its index.
// Clicking a selected chip removes whatever item selected it (a word, typed or clicked, or an index). The chips
// come from the bundled SD1 vocabulary (SD2 and SDXL place every word at the same position); "embedding:name"
// shows as text here, the node resolves it with the loaded CLIP.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const NODE_CLASS = "AESelectSubjectTokens";
const WIDGET = "aande_token_picker";
const DEBOUNCE_MS = 250;
const STYLE = `
.aande-picker { display: flex; flex-wrap: wrap; align-content: flex-start; gap: 3px; overflow-y: auto;
  font: 11px sans-serif; color: var(--input-text, #ddd); padding: 2px; box-sizing: border-box; }
.aande-chip { border: 1px solid #666; border-radius: 4px; padding: 1px 4px; cursor: pointer; user-select: none;
  background: var(--comfy-input-bg, #222); white-space: nowrap; }
.aande-chip.aande-cont { border-left-style: dotted; margin-left: -3px; border-top-left-radius: 0;
  border-bottom-left-radius: 0; }
.aande-chip.aande-selected { background: #2a6; border-color: #4c8; color: #fff; }
.aande-chip sub { color: #999; margin-left: 2px; }
.aande-chip.aande-selected sub { color: #dfd; }
.aande-chunk { width: 100%; color: #999; font-size: 10px; }
.aande-note { width: 100%; color: #e96; white-space: pre-wrap; word-break: break-word; }
.aande-note.aande-info { color: #999; }
`;

function addStyle() {
  if (document.getElementById("aande-picker-style")) return;
  const style = document.createElement("style");
  style.id = "aande-picker-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function chainCallback(widget, fn) {
  const previous = widget.callback;
  widget.callback = function (...args) {
    const result = previous?.apply(this, args);
    fn();
    return result;
  };
}

// Toggle `token` in the subjects text. Selected: drop the items that select it (the route's `selected`, an index
// list holding its position, or its own form, also while the route reports an error), "2 5, cat" -> "2, cat" for
// position 5. Not selected: append its form.
function toggleSubject(subjects, token, selected) {
  const items = subjects.split(",").map((s) => s.trim()).filter((s) => s);
  const isIndices = (item) => /^[+-]?\d+(\s+[+-]?\d+)*$/.test(item);
  const selecting = new Set(selected.filter((s) => s.pos === token.pos).map((s) => s.item));
  selecting.add(token.form);
  const holdsPos = (item) => isIndices(item) && item.split(/\s+/).map(Number).includes(token.pos);
  if (!items.some((item) => selecting.has(item) || holdsPos(item))) return [...items, token.form].join(", ");
  const kept = [];
  for (const item of items) {
    if (isIndices(item)) {
      const rest = item.split(/\s+/).filter((p) => Number(p) !== token.pos);
      if (rest.length) kept.push(rest.join(" "));
    } else if (!selecting.has(item)) {
      kept.push(item);
    }
  }
  return kept.join(", ");
}

function setupPicker(node) {
  const textWidget = node.widgets?.find((w) => w.name === "text");
  const subjectsWidget = node.widgets?.find((w) => w.name === "subjects");
  if (!textWidget || !subjectsWidget) return;
  addStyle();
  const element = document.createElement("div");
  element.className = "aande-picker";
  element.dataset.aandePicker = "1";
  // appended after `subjects` (not between it and the prompt) so widgets_values keep their indices
  const widget = node.addDOMWidget(WIDGET, "aande-token-picker", element, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => 46,
    getMaxHeight: () => 240,
  });
  widget.serialize = false;

  let timer = null;
  let sequence = 0;
  let selected = [];

  function render(answer, text) {
    element.replaceChildren();
    selected = answer.selected ?? [];
    const chosen = new Set(selected.map((s) => s.pos));
    let chunk = 0;
    let word = null;
    for (const token of answer.tokens) {
      if (token.chunk !== chunk) {
        chunk = token.chunk;
        const mark = document.createElement("div");
        mark.className = "aande-chunk";
        mark.textContent = `chunk ${chunk + 1} (from position ${chunk * 77})`;
        element.appendChild(mark);
      }
      const chip = document.createElement("span");
      chip.className = "aande-chip";
      if (token.word === word) chip.classList.add("aande-cont");
      if (chosen.has(token.pos)) chip.classList.add("aande-selected");
      word = token.word;
      chip.dataset.pos = String(token.pos);
      chip.dataset.form = token.form;
      chip.title = chosen.has(token.pos) ? `position ${token.pos}: click to remove it from subjects`
        : `position ${token.pos}: click to add "${token.form}" to subjects`;
      chip.append(token.text);
      const sub = document.createElement("sub");
      sub.textContent = String(token.pos);
      chip.appendChild(sub);
      chip.addEventListener("click", (event) => {
        event.stopPropagation();
        subjectsWidget.value = toggleSubject(String(subjectsWidget.value ?? ""), token, selected);
        subjectsWidget.callback?.(subjectsWidget.value);
        node.setDirtyCanvas(true, true);
      });
      element.appendChild(chip);
    }
    const notes = [];
    if (answer.error) notes.push(["aande-note", answer.error]);
    if (!answer.count && !answer.error) notes.push(["aande-note aande-info", "type a prompt to see its tokens"]);
    if (/(^|[\s(])embedding:/.test(text)) {
      notes.push(["aande-note aande-info", "embeddings show as text here; the node gives them one position per " +
        "vector, so select the words after one by word, not by index, and an embedding by typing embedding:name"]);
    }
    for (const [className, message] of notes) {
      const div = document.createElement("div");
      div.className = className;
      div.textContent = message;
      element.appendChild(div);
    }
  }

  async function refresh() {
    const mine = ++sequence;
    const body = { text: String(textWidget.value ?? ""), family: "sd1", subjects: String(subjectsWidget.value ?? "") };
    let answer;
    try {
      const response = await api.fetchApi("/aande/tokenize", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      answer = await response.json();
      if (!response.ok) answer = { tokens: [], count: 0, error: answer.error ?? `HTTP ${response.status}` };
    } catch (error) {
      answer = { tokens: [], count: 0, error: `token picker: ${error}` };
    }
    if (mine === sequence) render(answer, body.text);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  chainCallback(textWidget, schedule);
  chainCallback(subjectsWidget, schedule);
  const onConfigure = node.onConfigure;
  node.onConfigure = function (...args) {
    const result = onConfigure?.apply(this, args);
    schedule();
    return result;
  };
  schedule();
}

app.registerExtension({
  name: "aande.TokenPicker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_CLASS) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      setupPicker(this);
      return result;
    };
  },
});
