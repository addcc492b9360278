// A click on an overview cell opens that head. The overview's layout.meta holds the grid geometry
// (rows and cols of one head, the gap between heads, the head drawn in each column slot (columns grouped
// by K/V head change the order), the attention kind: playground.plots.overview);
// the clicked cell becomes {kind, layer, head}, typed into a hidden textbox whose change event
// opens the head on the server.
// Reads window.PLAYGROUND.headPickId (set by playground/ui/attention.py).
(() => {
  const {headPickId} = window.PLAYGROUND;
  const bound = new WeakSet();
  const pick = (gd, e) => {
    const meta = gd.layout && gd.layout.meta, p = e.points && e.points[0];
    if (!meta || !p || !Array.isArray(p.pointIndex)) return;
    const [row, col] = p.pointIndex, down = meta.rows + meta.gap, across = meta.cols + meta.gap;
    if (row % down >= meta.rows || col % across >= meta.cols) return;  // a gutter
    const box = document.querySelector(`#${headPickId} textarea, #${headPickId} input`);
    if (!box) return;
    const slot = Math.floor(col / across), head = Array.isArray(meta.heads) ? meta.heads[slot] : slot;
    box.value = JSON.stringify({kind: meta.kind, layer: Math.floor(row / down), head,
                                at: Date.now()});  // 'at': a second click on the same cell is a change too
    box.dispatchEvent(new Event("input", {bubbles: true}));
  };
  // bind when the pointer first enters a plot (before any click on it); a redrawn plot is a new element
  document.addEventListener("pointerover", e => {
    const gd = e.target.closest && e.target.closest(".overview-plot .js-plotly-plot");
    if (!gd || bound.has(gd) || typeof gd.on !== "function") return;
    bound.add(gd);
    gd.on("plotly_click", ev => pick(gd, ev));
  }, true);
})();
