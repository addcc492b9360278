// Every Plotly figure downloads as PNG or SVG at the size chosen in the page's export row: two
// modebar buttons in place of plotly's own camera (which saves at the on-screen size only). They go
// in plotly's default config, so every figure gets them, and every redraw keeps them: Gradio loads
// plotly.js with the first figure and sets window.Plotly just before drawing it, which configures it.
// Reads window.PLAYGROUND.exportWidthId, exportHeightId, exportMax and exportTitles
// ({language: {png, svg}}) (set by playground/ui/figure_export.py).
(() => {
  const {exportWidthId, exportHeightId, exportMax, exportTitles} = window.PLAYGROUND;
  const ARROW = {width: 24, height: 24, path: "M11 3h2v9.6l3.3-3.3 1.4 1.4-6.7 6.7-6.7-6.7 1.4-1.4 3.3 3.3V3zM4 18h16v2H4z"};
  const titles = () => {
    const lang = document.documentElement.lang || "en", base = lang.split("-")[0];
    return exportTitles[lang] || exportTitles[Object.keys(exportTitles).find(k => k.split("-")[0] === base)]
      || exportTitles.en;
  };
  // a side typed in the export row (whole px, at most exportMax), else the figure's on-screen side
  const side = (id, onScreen) => {
    const box = document.querySelector(`#${id} input`), typed = box ? Math.round(Number(box.value)) : NaN;
    return box && box.value.trim() !== "" && typed >= 1 ? Math.min(typed, exportMax) : Math.round(onScreen);
  };
  // the figure's title as plain letters and digits joined by '-' (markup dropped); plotly adds the extension
  const filename = gd => {
    const title = gd.layout && gd.layout.title, words = typeof title === "string" ? title : (title && title.text) || "";
    const plain = words.replace(/<[^>]*>/g, " ").normalize("NFKC").replace(/[^\p{L}\p{N}]+/gu, "-")
      .replace(/^-+|-+$/g, "").slice(0, 80);
    return plain || "figure";
  };
  const configure = plotly => {
    const button = (format, icon) => ({
      name: `download-${format}`, title: () => titles()[format], icon,
      click: gd => {
        const box = gd.getBoundingClientRect();
        plotly.downloadImage(gd, {format, filename: filename(gd),
                                  width: side(exportWidthId, box.width), height: side(exportHeightId, box.height)});
      },
    });
    plotly.setPlotConfig({modeBarButtonsToRemove: ["toImage"],
                          modeBarButtonsToAdd: [button("png", plotly.Icons.camera), button("svg", ARROW)]});
  };
  if (window.Plotly) { configure(window.Plotly); return; }
  let loaded;
  Object.defineProperty(window, "Plotly", {configurable: true, enumerable: true, get: () => loaded,
                                           set: plotly => { loaded = plotly; configure(plotly); }});
})();
