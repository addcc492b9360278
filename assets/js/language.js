// The page's language, told to the server: copy <html lang> into a cookie that every request
// carries (again whenever this tab is focused or clicked, so two tabs in two languages each send
// their own), and on a switch press the hidden button that re-renders what the server wrote.
// Reads window.PLAYGROUND.langCookie and window.PLAYGROUND.relocalizeId (set by playground/ui/lang.py).
(() => {
  const {langCookie, relocalizeId} = window.PLAYGROUND;
  let last = null;
  const sync = () => {
    const lang = document.documentElement.lang;
    if (!lang) return;
    // a Space runs in a cross-site iframe: there only a partitioned, secure cookie is kept
    const scope = location.protocol === "https:" ? "; SameSite=None; Secure; Partitioned" : "; SameSite=Lax";
    document.cookie = langCookie + "=" + encodeURIComponent(lang) + "; path=/" + scope;
    if (last !== null && lang !== last) document.getElementById(relocalizeId)?.click();
    last = lang;
  };
  new MutationObserver(sync).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  window.addEventListener("focus", sync);
  document.addEventListener("pointerdown", sync, true);
  sync();
})();
