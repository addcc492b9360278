// A box zoom on the one-head map asks the server for that window at screen resolution. The head figure's
// layout.meta holds the window it shows (rows, cols: token indices, end excluded), the tokens each cell
// pools (cell) and the whole map's size (tokens): playground/ui/attention.py head_figures. Category
// positions on the zoomed axes become token indices; a double click (autorange) asks for the whole head.
// The window is typed into a hidden textbox whose change event redraws the head, its mask and overlay.
// Reads window.PLAYGROUND.headZoomId.
(() => {
  const {headZoomId} = window.PLAYGROUND;
  const bound = new WeakSet();
  // the cells from the one nearest the box's first edge to the one nearest its last (category i is centred on
  // i), so a box drawn from cell centre to cell centre takes both end cells even a few pixels short
  const span = (range, first, end, cell) => {
    const lo = Math.min(range[0], range[1]), hi = Math.max(range[0], range[1]);
    const i = Math.max(0, Math.round(lo)), j = Math.max(i, Math.round(hi));
    return [Math.min(end - 1, first + i * cell), Math.min(end, first + (j + 1) * cell)];
  };
  const ask = (gd, ev) => {
    const meta = gd.layout && gd.layout.meta;
    if (!meta || !Array.isArray(meta.rows) || !ev) return;
    let rows = meta.rows, cols = meta.cols;
    if (ev["xaxis.autorange"] || ev["yaxis.autorange"]) {
      rows = [0, meta.tokens[0]]; cols = [0, meta.tokens[1]];
    } else {
      const x = ev["xaxis.range"] || (ev["xaxis.range[0]"] !== undefined && [ev["xaxis.range[0]"], ev["xaxis.range[1]"]]);
      const y = ev["yaxis.range"] || (ev["yaxis.range[0]"] !== undefined && [ev["yaxis.range[0]"], ev["yaxis.range[1]"]]);
      if (!x && !y) return;
      if (x) cols = span(x, meta.cols[0], meta.cols[1], meta.cell[1]);
      if (y) rows = span(y, meta.rows[0], meta.rows[1], meta.cell[0]);
    }
    if (rows[0] === meta.rows[0] && rows[1] === meta.rows[1] && cols[0] === meta.cols[0] && cols[1] === meta.cols[1]
        && meta.cell[0] === 1 && meta.cell[1] === 1) return;  // exact already: Plotly's own zoom is enough
    const box = document.querySelector(`#${headZoomId} textarea, #${headZoomId} input`);
    if (!box) return;
    box.value = JSON.stringify({kind: meta.kind, layer: meta.layer, head: meta.head, rows, cols, at: Date.now()});
    box.dispatchEvent(new Event("input", {bubbles: true}));
  };
  document.addEventListener("pointerover", e => {
    const gd = e.target.closest && e.target.closest(".head-map .js-plotly-plot");
    if (!gd || bound.has(gd) || typeof gd.on !== "function") return;
    bound.add(gd);
    gd.on("plotly_relayout", ev => ask(gd, ev));
  }, true);
})();
