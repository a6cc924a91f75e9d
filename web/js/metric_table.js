// The table of per-image scores that "CLIP Score (A&E paper)" and "BLIP Caption Score (A&E paper)" return as their
// UI output (ui.text), shown in the node after it runs, so that seeds can be ranked without wiring a display node.
// A read-only DOM widget appended after the inputs and never saved with the workflow (widgets_values keep their
// indices, as for the token picker).
import { app } from "../../../scripts/app.js";

const NODE_CLASSES = new Set(["AEClipScore", "AEBlipCaptionScore"]);
const WIDGET = "aande_metric_table";

function tableWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET);
  if (existing) return existing;
  const element = document.createElement("pre");
  element.dataset.aandeMetricTable = "1";
  element.style.cssText = "margin: 0; padding: 4px; overflow: auto; font: 11px monospace; white-space: pre; " +
    "color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222); box-sizing: border-box;";
  const widget = node.addDOMWidget(WIDGET, "aande-metric-table", element, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => 60,
  });
  widget.serialize = false;
  widget.element = element;
  return widget;
}

app.registerExtension({
  name: "aande.metricTable",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_CLASSES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      const widget = tableWidget(this);
      widget.element.textContent = text;
      const lines = text.split("\n").length;
      const width = Math.max(this.size[0], 8 + 7 * Math.max(...text.split("\n").map((l) => l.length)));
      this.setSize([Math.min(width, 900), Math.max(this.size[1], this.computeSize()[1] + 14 * lines)]);
      this.setDirtyCanvas(true, true);
    };
  },
});
